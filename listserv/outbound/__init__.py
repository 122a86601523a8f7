"""Where mail goes out: the outbox, the last changes to each copy, signing and the transports."""
