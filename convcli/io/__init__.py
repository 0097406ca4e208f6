"""Image and volume I/O: reading (Pillow, tifffile, npy), writing atomically, limits."""
