"""Regenerate the bundled sample data: two monthly batches of ride-hailing trips.

The task: predict whether a rider tips (``tipped``), from when, where and how they rode.
The second batch is a month later with slightly shifted behaviour (more app payments,
more late-night trips), so the demo's second run trains a real challenger on more data.

    python tools/make_sample_data.py        # writes include/data/trips_2026_0{1,2}.csv
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ZONES = ["downtown", "airport", "university", "harbor", "old_town", "stadium", "suburbs_n", "suburbs_s"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OUT = Path(__file__).resolve().parent.parent / "include" / "data"


def make_batch(rng: np.random.Generator, n: int, start_id: int, month: int) -> pd.DataFrame:
    shift = month - 1
    hour_weights = np.array([3, 2, 2, 1, 1, 2, 4, 7, 9, 6, 5, 5, 6, 5, 5, 6, 8, 9, 8, 7, 6, 6, 5, 4], float)
    hour_weights[[0, 1, 2, 23]] *= 1 + 0.5 * shift  # more late-night trips in February
    hour = rng.choice(24, n, p=hour_weights / hour_weights.sum())
    day = rng.choice(DAYS, n, p=[0.13, 0.13, 0.13, 0.14, 0.17, 0.16, 0.14])
    zone = rng.choice(ZONES, n, p=[0.3, 0.1, 0.12, 0.08, 0.12, 0.06, 0.11, 0.11])
    passengers = rng.choice([1, 2, 3, 4, 5, 6], n, p=[0.62, 0.2, 0.08, 0.06, 0.03, 0.01])
    distance = np.round(rng.gamma(2.0, 2.6, n) + np.where(zone == "airport", 12, 0), 2)
    speed = np.where((hour >= 7) & (hour <= 9) | (hour >= 16) & (hour <= 18), 18, 30) + rng.normal(0, 4, n)
    duration = np.round(np.clip(distance / np.clip(speed, 8, None) * 60 + rng.normal(3, 2, n), 2, None), 1)
    fare = np.round(3.0 + 1.55 * distance + 0.35 * duration + np.where(zone == "airport", 5, 0), 2)
    payment = rng.choice(["card", "cash", "app"], n, p=[0.5 - 0.05 * shift, 0.25 - 0.05 * shift, 0.25 + 0.1 * shift])
    logit = (
        -0.6
        + np.select([payment == "card", payment == "app", payment == "cash"], [1.1, 1.4, -1.8])
        + 0.05 * distance
        + 0.6 * ((hour >= 20) | (hour <= 2))
        + 0.4 * np.isin(day, ["fri", "sat"])
        + np.select([zone == "airport", zone == "downtown", zone == "university"], [0.5, 0.3, -0.7], 0.0)
        - 0.15 * (passengers - 1)
        + rng.normal(0, 0.8, n)
    )
    tipped = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "trip_id": np.arange(start_id, start_id + n),
            "hour": hour,
            "day_of_week": day,
            "pickup_zone": zone,
            "passengers": passengers,
            "trip_distance_km": distance,
            "trip_duration_min": duration,
            "fare_usd": fare,
            "payment_type": payment,
            "tipped": tipped,
        }
    )
    # Real exports have holes: a few riders' counts were not recorded.
    frame.loc[rng.random(n) < 0.01, "passengers"] = np.nan
    frame["passengers"] = frame["passengers"].astype("Int64")
    return frame


def main() -> None:
    rng = np.random.default_rng(20260101)
    OUT.mkdir(parents=True, exist_ok=True)
    make_batch(rng, 4000, 100000, 1).to_csv(OUT / "trips_2026_01.csv", index=False)
    make_batch(rng, 4000, 104000, 2).to_csv(OUT / "trips_2026_02.csv", index=False)


if __name__ == "__main__":
    main()
