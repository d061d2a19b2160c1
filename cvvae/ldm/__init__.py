"""Generative compatibility (paper Table 2 at small scale): a latent diffusion model on the frozen image VAE,
one set of sampled latents decoded by several decoders, and FID/KID of the decoded images.

- :mod:`cvvae.ldm.config`: the ``ldm`` profile section (dataclasses with documented defaults);
- :mod:`cvvae.ldm.train`: ``cvvae train-ldm``, a resumable trainer of a diffusers ``UNet2DModel``;
- :mod:`cvvae.ldm.sample`: N latents from a fixed seed, saved once with their sampling settings;
- :mod:`cvvae.ldm.decode`: the one latents file through each decoder, into PNG folders and grid strips;
- :mod:`cvvae.ldm.score`: FID/KID against held-out images and pairwise PSNR, into ``metrics.csv``.

``python -m cvvae.ldm {train,sample,decode,reference,score}`` runs each step.
"""
