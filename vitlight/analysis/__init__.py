"""What a trained model shows: the ViT paper's Fig. 7 analyses and attention rollout (tensors, no plotting).

patch_embedding_components(model, k)     (k, C, P, P) principal components of the patch-embedding filters
position_embedding_similarity(model)     (N, N) cosine similarity of the patch tokens' position embeddings
mean_attention_distance(model, images)   (depth, heads) attention-weighted patch distance, in pixels
attention_rollout(model, images)         (B, grid_h, grid_w) rollout of the class token's attention
"""

from vitlight.analysis.attention_distance import mean_attention_distance
from vitlight.analysis.attention_rollout import attention_rollout
from vitlight.analysis.embeddings import patch_embedding_components, patch_embedding_pca, position_embedding_similarity

__all__ = [
    "attention_rollout",
    "mean_attention_distance",
    "patch_embedding_components",
    "patch_embedding_pca",
    "position_embedding_similarity",
]
