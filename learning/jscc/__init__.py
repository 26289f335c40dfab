"""DeepJSCC: deep joint source-channel coding of images (models, channels, data, training, evaluation, baselines).

Import the submodules you need (``learning.jscc.models``, ``.channels``, ``.data``, ``.checkpoint``, ``.train``,
``.evaluate``, ``.baselines``); this package imports nothing heavy by itself.
"""
