"""Training: backbones cut into a frozen stem and a trainable tail, LoRA / partial fine-tuning.

* :mod:`.backbones` - EfficientNet-Lite0 (packaged weights) and ResNet-50 (a local weights file);
* :mod:`.config` - one run's hyper-parameters; :mod:`.finetune` - cached stem features and a run.
"""
