"""Package data: named formats (formats/) and accelerator descriptions (hw_models/), mapped here by setup.py."""
