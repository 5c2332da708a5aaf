"""The recipe the Cityscapes and ADE20K reference configs share, after mmsegmentation's
`schedule_80k` and its DeepLab v3 configs: each image scaled by a random factor in
0.5-2.0 from its own size, plain cross-entropy, SGD (momentum 0.9, weight decay 5e-4) with
a poly learning rate (power 0.9) from 0.01 for 80k iterations, validation and a checkpoint
every 1,000, never stopping early, and a final full-resolution sliding-window evaluation.

Not a named config: `research/configs/__init__.py` lists those.
"""


def schedule_80k_fields():
    """{Config field: value} of the shared recipe; each config adds its crop, batch and window."""
    return dict(
        resize_to_before_crop=None,            # scale from each image's own size
        scale_range=(0.5, 2.0),
        ce_weight=1.0,                         # plain cross-entropy
        dice_weight=0.0,
        class_weighted=False,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=5e-4,
        learning_rate=0.01,
        lr_schedule="poly",
        poly_power=0.9,
        epochs=80,                             # 80 x 1000 = 80k iterations, val every 1000
        steps_per_epoch=1000,
        monitor="val_mean_iou",
        early_stop_patience=1000,              # a fixed budget: never stop early
        checkpoint_every_steps=1000,
        final_eval_full_resolution=True,
        eval_mode="slide",
    )
