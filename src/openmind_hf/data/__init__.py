"""The data path: record formats, loaders, media decoding, the bad-data policy, synthetic and public datasets.

Submodules are imported where they are used, so `import openmind_hf.data` stays cheap.
"""
