"""H.264 building blocks, pure (no sockets, no processes): encode and decode access units
(``h264``), fragmented MP4 for browsers and players (``fmp4``), push to a media server (``push``),
record to and read from MP4 files (``mp4file``). All of them through PyAV (FFmpeg, libx264)."""
