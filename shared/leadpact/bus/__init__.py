"""The event bus: one interface, two implementations chosen by URL.

``memory://`` keeps partitioned logs in the process (the embedded mode); ``kafka://host:port``
talks to Kafka (or tansu) through aiokafka. Both give consumer groups, key-based partitioning,
at-least-once delivery with offsets committed after the handler returned, and a dead-letter
topic ``<topic>.dlq`` for messages the handler rejects.
"""

from leadpact.bus.base import (
    DLQ_SUFFIX,
    DeadLetter,
    EventBus,
    Message,
    MessageHandler,
    Subscription,
    dlq_topic,
)
from leadpact.bus.factory import bus_from_url

__all__ = [
    "DLQ_SUFFIX",
    "DeadLetter",
    "EventBus",
    "Message",
    "MessageHandler",
    "Subscription",
    "bus_from_url",
    "dlq_topic",
]
