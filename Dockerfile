# The Airflow image of the docker-compose stack: the official Airflow image with mlops-airflow
# installed, pinned by the repository's constraints.txt (the same pins as the demo and CI).
#
#   docker compose build        (docker-compose.yaml builds it as mlops-airflow:local)
#
# The constraints were resolved on Python 3.11, so the Python 3.11 variant of the image is the default.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

WORKDIR /opt/mlops-airflow
COPY --chown=airflow:0 pyproject.toml README.md constraints.txt ./
COPY --chown=airflow:0 mlops_airflow ./mlops_airflow
COPY --chown=airflow:0 dags ./dags
COPY --chown=airflow:0 include ./include

# Airflow itself is named with its installed version so that pip never moves it, as the
# Airflow image's docs advise; everything else follows constraints.txt. The extras add the
# amazon provider (S3 sensors) and MLflow (the optional `mlflow` profile and its backend).
RUN pip install --no-cache-dir --constraint constraints.txt \
        "apache-airflow==${AIRFLOW_VERSION}" "/opt/mlops-airflow[aws,mlflow]" \
    && mlops-airflow --help >/dev/null

WORKDIR /opt/airflow
# The optional MLflow service keeps its SQLite store here (a volume in docker-compose.yaml): made
# by the image's user, group 0 writable like the rest of /opt/airflow, so a new volume is writable.
RUN mkdir -p /opt/airflow/mlflow && chmod 775 /opt/airflow/mlflow
