"""The pure image core: numpy and OpenCV on frames, no sockets, no processes.

zmqcam.image.remap  stitching as one remap per camera: the maps and the panorama composer
zmqcam.image.blend  seams: the bands where neighbouring slots overlap, and feathering them
zmqcam.image.exposure  gains that make neighbouring cameras agree, smoothed over time
zmqcam.image.cards  the NO SIGNAL card of a panorama slot and the bridge's "waiting for frames" card
zmqcam.image.resize a JPEG at another size or quality (resized snapshots)
"""
