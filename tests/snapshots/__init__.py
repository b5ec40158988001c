"""Process replay: golden copies of every rendered kernel source (tests/snapshots/glsl/<artifact>.comp)."""
