"""OpenMind: a vision + audio + text chat model that can think, native to Hugging Face.

Importing this package registers the OpenMind classes with the transformers Auto classes.
"""
