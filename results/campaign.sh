#!/usr/bin/env bash
# The science campaign: every results/<step>/COMMAND in priority order, each a resumable `critkl sweep` (finished
# points are skipped, a killed point resumes), so running this again continues where the last session stopped.
#
#   bash results/campaign.sh                 # every step, in order
#   bash results/campaign.sh beyond ablation # some steps, in the order given
#   JOBS=1 bash results/campaign.sh levels & JOBS=1 bash results/campaign.sh beyond   # two steps side by side
#
# Steps: levels (pre-train, probe and ship N = 2..5 x 3 seeds), table1 (Table 1 / Fig. 5 per level), exploration
# (Fig. 3), beyond (the side-by-side), ablation (Fig. 6), frontier-a2c, frontier-grpo (the other RL methods), regime
# (the regime search's current configuration; SEEDS picks pre-training seeds, e.g. SEEDS=1).
# It runs a frozen copy of HEAD (a git worktree under /tmp), so editing the code meanwhile cannot change a sweep
# half-way; sweeps/, results/, models/ and .critkl-home/ are this checkout's (symlinked). Two jobs, one torch
# thread each: the 2-core machines of this project (JOBS sets the sweeps' --jobs, default 2; CRITKL_TORCH_THREADS each
# point's threads, default 1: a pre-training alone on the machine, `JOBS=1 CRITKL_TORCH_THREADS=2 bash results/campaign.sh levels`). Commit finished points (folders with done.json) as they land.
set -euo pipefail
ROOT=$(git rev-parse --show-toplevel)
ALL="levels table1 exploration beyond ablation frontier-a2c frontier-grpo regime"
STEPS=${*:-$ALL}
for step in $STEPS; do
  case " $ALL " in *" $step "*) ;; *) echo "campaign: unknown step '$step'; steps: $ALL" >&2; exit 2;; esac
done
FROZEN=$(mktemp -d /tmp/critkl-campaign.XXXXXX)
git -C "$ROOT" worktree add --detach "$FROZEN" HEAD >/dev/null
trap 'git -C "$ROOT" worktree remove --force "$FROZEN" >/dev/null 2>&1 || true' EXIT
mkdir -p "$ROOT/sweeps" "$ROOT/.critkl-home"
for d in sweeps results models .critkl-home; do rm -rf "${FROZEN:?}/$d"; ln -s "$ROOT/$d" "$FROZEN/$d"; done
cd "$FROZEN"
export CRITKL_TORCH_THREADS=${CRITKL_TORCH_THREADS:-1} PYTHONPATH="$FROZEN" PATH="$ROOT/.venv/bin:$PATH"
for step in $STEPS; do
  echo "campaign: $step ($(date -u +%FT%TZ), frozen at $(git rev-parse --short HEAD))"
  case $step in
    frontier-a2c) PRESET=cpu-a2c bash -e results/frontier/COMMAND ;;
    frontier-grpo) PRESET=cpu-grpo bash -e results/frontier/COMMAND ;;
    *) bash -e "results/$step/COMMAND" ;;
  esac
done
