"""The systems under test that clients reach over WebSocket, one module each,
behind the interface of :mod:`bench.systems.base`."""

from bench.systems.base import Endpoints, System
from bench.systems.centrifugo import Centrifugo, centrifugo_binary
from bench.systems.floor import Floor
from bench.systems.kafka_alone import KafkaAlone
from bench.systems.redis_pubsub import RedisPubSub
from bench.systems.tidings import Tidings, TidingsAsgi, TidingsProcesses

__all__ = [
    "Centrifugo",
    "Endpoints",
    "Floor",
    "KafkaAlone",
    "RedisPubSub",
    "System",
    "Tidings",
    "TidingsAsgi",
    "TidingsProcesses",
    "centrifugo_binary",
]
