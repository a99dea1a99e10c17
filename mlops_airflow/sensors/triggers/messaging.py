"""The common-messaging ``MessageQueueTrigger``, built only where it runs.

Importing ``airflow.providers.common.messaging.triggers.msg_queue`` instantiates every installed
queue provider (the Amazon one imports boto3), and the DAG processor would pay that at every
parse of a DAG whose ``AssetWatcher`` holds one. This trigger carries the same arguments as
plain data and builds the ``MessageQueueTrigger`` in the triggerer, on first use.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow.triggers.base import TriggerEvent


class QueueEventTrigger(BaseEventTrigger):
    """``MessageQueueTrigger(scheme=scheme, **kwargs)``, imported and built when the triggerer runs it."""

    def __init__(self, *, scheme: str, **kwargs: Any) -> None:
        super().__init__()
        self.scheme = scheme
        self.kwargs = kwargs

    @cached_property
    def trigger(self) -> BaseEventTrigger:
        """The common-messaging trigger that does the work (it picks the provider by ``scheme``)."""
        from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

        return MessageQueueTrigger(scheme=self.scheme, **self.kwargs)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {"scheme": self.scheme, **self.kwargs}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in self.trigger.run():
            yield event
