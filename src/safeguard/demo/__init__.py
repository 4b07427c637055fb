"""The ``safeguard demo`` main job and the tiny offline language model it builds."""
