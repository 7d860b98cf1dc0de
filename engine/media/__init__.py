"""Media: decode and sample videos, masks as RLE, overlays, images for chat models."""
