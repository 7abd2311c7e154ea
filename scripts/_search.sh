# shellcheck shell=bash
# The loop shared by the validation searches (adv_search.sh, objective_search.sh): source it after
# setting EPOCHS, OUT, SETTINGS and the associative array ARGS (setting name -> train options).
# Every setting is a short run of the shipped ResNet-26 teacher -> ResNet-8 on CIFAR-10, seed 0;
# a setting whose log is complete is skipped, a killed one resumes. The searches change the first
# version's recipes one option at a time (--recipe 1), as they did when they ran.
for name in $SETTINGS; do  # every name is checked before anything runs
  if [ -z "${ARGS[$name]+set}" ]; then
    echo "unknown setting: $name (known: ${!ARGS[*]})" >&2
    exit 2
  fi
done
for name in $SETTINGS; do
  dir="$OUT/$name"
  if [ -f "$dir/log.jsonl" ] && [ "$(wc -l < "$dir/log.jsonl")" -ge "$EPOCHS" ]; then
    echo "done already: $dir"
    continue
  fi
  teacher=(--teacher resnet26_cifar10)
  [[ " ${ARGS[$name]} " == *" --method scratch "* ]] && teacher=()
  echo "=== $dir"
  # shellcheck disable=SC2086
  python -m dfkd_lib train --recipe 1 ${ARGS[$name]} "${teacher[@]}" --student resnet8 --dataset cifar10 \
    --epochs "$EPOCHS" --seed 0 --probe-order first --out "$dir" --resume
done
