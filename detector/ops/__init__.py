"""Box operations and NMS: the floor of the package (torch and torchvision only)."""
