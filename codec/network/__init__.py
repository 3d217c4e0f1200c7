"""The network: causal layers and their streaming state, the SEANet encoder and decoders, the residual
vector quantizer, the model that composes them, its config and the preset architectures."""
