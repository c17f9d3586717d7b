"""Network architectures that diffusers does not provide, written to load official checkpoints.

* `videocrafter2`: the LVDM 3D UNet of VideoCrafter2 (plus T2V-Turbo's w projection).
* `ldm_autoencoder`: LDM `first_stage_model.*` weights -> diffusers' `AutoencoderKL`.
* `openclip_text`: the OpenCLIP text tower used at its penultimate layer (LVDM conditioning).
"""
