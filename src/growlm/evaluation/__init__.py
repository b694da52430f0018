"""Evaluation: language-modelling loss, perplexity and bits per byte."""
