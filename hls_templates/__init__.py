"""Shipped data: the hls_templates/ folder of the repository, installed as eehw.hls_templates."""
