"""The remote SDK resources (/sdk, /detector, /iso): images in, the worker's analysis out."""
