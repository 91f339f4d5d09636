"""leadpact: the library every leadpact service depends on.

Holds only what at least two services use: settings, the CloudEvents envelope and event
models, the event bus (memory and Kafka), storage with outbox and inbox, the SLA contract,
the clock, metrics, logging and the service bootstrap.
"""

__version__ = "0.1.0"
