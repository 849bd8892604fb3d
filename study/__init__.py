"""Studies: recipes x seeds x settings, each trial one run of the kit's own path (pretrain, fine-tune, export, evaluate).

    python -m study run --name NAME --recipes pvae dipvae_i --seeds 0 1 2 --steps 20000 ...
    python -m study table --name NAME
    python -m study status --name NAME

``study.trial`` runs one trial and writes ``studies/<name>/runs/<trial-id>.json``; ``study.__main__`` schedules trials
on Ray Tune (embedded, or a cluster given by ``--address``).
"""
