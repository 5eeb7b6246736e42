"""The stand-in services a user starts on one machine: the Kafka broker and cluster, the broker's TLS, the object
store, the Spark standalone cluster, and the daemon helper they share."""
