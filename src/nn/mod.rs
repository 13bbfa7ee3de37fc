//! The seed report's network, equation by equation (§2.1).
//!
//! Notation, as in the report: layer l maps `a^l` to `z^{l+1} = W^l a^l + b^l`, hidden layers
//! apply `a^{l+1} = f(z^{l+1})`, the last layer is linear and followed by softmax, and the loss
//! is cross-entropy, so the output error is `δ^L = ŷ − y`. Gradients are named after the
//! forward variable they belong to: `d_z = ∂E/∂z`, `d_a`, `d_w`, `d_b`.
//!
//! Dimension letters used in every shape comment:
//! - `B`: samples in the batch (rows of every activation buffer; buffers are batch-major)
//! - `I`: a layer's fan-in, `O`: its fan-out
//! - `K`: classes (10 for MNIST)
//!
//! All buffers are flat, row-major `Vec`s; a weight matrix `W^l` is stored `(O, I)`, exactly the
//! `[out, in]` layout of PyTorch's `nn.Linear` and of our safetensors files.

pub mod activation;
pub mod dropout;
pub mod gradcheck;
pub mod init;
pub mod linear;
pub mod loss;
pub mod mlp;

pub use activation::Activation;
pub use init::Init;
pub use linear::Linear;
pub use mlp::{Mlp, Workspace};
