#!/usr/bin/env bash
# Training data of the shipped serve_bread policy: synthetic human demonstrations, preprocessed.
#
#   scripts/make_training_data.sh [NUM_DEMOS] [OUT]        (defaults: 120 build/data/serve_bread)
#
# Generates NUM_DEMOS synthetic serve_bread recordings (humanego_sim generate_demos, 320x320 fisheye video,
# seeds 0..NUM_DEMOS-1) and preprocesses them (humanego_training preprocess) with the shipped
# config/preprocess.yaml, changed in three keys to keep it fast and the training windows whole:
#   image 240x240 (the policy sees 96..128 px), JPEG frames, and drop_frames_without_object_mask: false
#   (frames where the hand hides the grasped bread stay: its pose is carried with the hand, and dropping them
#   would cut holes into the 50-step future targets).
# It works in batches of BATCH (default 10) demos, generating then preprocessing each, so training data grows
# while it runs. Both steps resume: finished demos and preprocessing stages are kept, so rerunning (or raising
# NUM_DEMOS) only does what is missing. Prints seconds per demo of each step. NICE (default 10) sets the
# priority. Everything goes to OUT: the recordings (OUT/demo_XXXX) and the derived preprocess config.
set -euo pipefail
num="${1:-120}"
out="${2:-build/data/serve_bread}"
batch="${BATCH:-10}"
size_video=320
size_image=240

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
set +u
# shellcheck disable=SC1091
source "$root/scripts/env.sh"
set -u
mkdir -p "$out"
config="$out/preprocess.yaml"
python - "$root/config/preprocess.yaml" "$config" "$size_image" <<'EOF'
import sys

import yaml

source, target, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = yaml.safe_load(open(source)) or {}
config.setdefault("image", {}).update(width=size, height=size, format="jpg", jpeg_quality=95)
config["drop_frames_without_object_mask"] = False
with open(target, "w") as f:
    f.write(f"# Derived from {source} by scripts/make_training_data.sh; do not edit (rerun the script).\n")
    yaml.safe_dump(config, f, sort_keys=False)
EOF

gen_s=0
pre_s=0
done_before=$(find "$out" -maxdepth 1 -name 'demo_*' -type d | wc -l)
for ((upto = batch; upto < num + batch; upto += batch)); do
  ((upto > num)) && upto=$num
  t0=$(date +%s.%N)
  nice -n "${NICE:-10}" humanego run humanego_sim generate_demos --task serve_bread --num "$upto" --out "$out" \
    --seed 0 --size "$size_video" "$size_video" --no-progress
  t1=$(date +%s.%N)
  # The demos as a list (not the folder): preprocess recordings 0..upto-1 only, in order.
  mapfile -t recordings < <(for ((i = 0; i < upto; i++)); do printf '%s/demo_%04d\n' "$out" "$i"; done)
  nice -n "${NICE:-10}" humanego run humanego_training preprocess --recording "${recordings[@]}" \
    --task serve_bread --config "$config" --no-progress | tail -n 1 \
    || echo "[WARN] preprocessing failed on some recordings (named above); they are left out of training" >&2
  t2=$(date +%s.%N)
  gen_s=$(python -c "print($gen_s + $t1 - $t0)")
  pre_s=$(python -c "print($pre_s + $t2 - $t1)")
done
new=$((num - done_before))
if ((new > 0)); then
  python -c "print(f'{$new} new demos: generate {$gen_s / $new:.1f} s/demo, preprocess {$pre_s / $new:.1f} s/demo')"
fi
kept=$(find "$out" -path '*/preprocess/all_data/[0-9]*/training_data.json' | wc -l)
echo "$num demos, $kept training frames in $out"
