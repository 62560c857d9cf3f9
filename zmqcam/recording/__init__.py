"""Recordings of a rig.

zmqcam.recording.format    the file format: tracks, index, manifest, replay.toml (pure files)
zmqcam.recording.recorder  the Recorder, a bus consumer that writes one
"""
