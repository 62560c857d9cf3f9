"""The frame bus: everything that puts bytes on ZeroMQ or reads them back.

zmqcam.bus.protocol  the wire format: the only module that knows the bytes
zmqcam.bus.sockets   publishers, subscribers and demand (who wants which topic)
zmqcam.bus.curve     CURVE keys of a config, key generation, the authenticator
zmqcam.bus.status    the status vocabulary every process publishes and reads
"""
