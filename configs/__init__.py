"""Shipped data: the configs/ folder of the repository, installed as eehw.configs."""
