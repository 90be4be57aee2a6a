"""The TF.js body-pix reference (Node) and its Python driver, see ``tfjs.py``."""
