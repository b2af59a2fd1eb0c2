#!/usr/bin/env bash
# The reconciler GitHub Action's main step (action.yml runs it): validate, plan, apply or check drift, and
# write what happened to $GITHUB_OUTPUT so that the comment, the uploads and the verdict steps can follow.
#
# Exits non-zero only on an error (a bad spec, an API failure, a missing setting): a blocked plan, changes
# found or an apply stopped at the daily write cap are outcomes, reported through `result` and `verdict`.
#
# Inputs (environment): RECONCILER_COMMAND (validate | plan | apply | continue | drift), RECONCILER_PATH (the spec
# folder), RECONCILER_ALLOW_DELETES, RECONCILER_MAX_DURATION (seconds, apply), RECONCILER_OUT (a folder
# for plan.md, plan.json, errors.txt, apply.txt), NEXUDUS_API_URL and the credentials.
set -uo pipefail

command=${RECONCILER_COMMAND:?RECONCILER_COMMAND is not set}
path=${RECONCILER_PATH:-completions/}
out=${RECONCILER_OUT:-${RUNNER_TEMP:-/tmp}/reconciler}
mkdir -p "$out"
: > "$out/errors.txt"

output() { echo "$1=$2" >> "${GITHUB_OUTPUT:-/dev/null}"; }
error() { echo "::error::$1"; echo "$1" >> "$out/errors.txt"; }
notice() { echo "::notice::$1"; }

output out "$out"

# Where the credentials go is pinned by the workflow, never by a file that a pull request can change.
if [ "$command" != validate ] && [ -z "${NEXUDUS_API_URL:-}" ]; then
  error "NEXUDUS_API_URL is not set: set it in the workflow's env (for example https://spaces.nexudus.com), so that a pull request editing reconciler.yaml cannot send the credentials elsewhere"
  output result error
  exit 1
fi

allow=()
if [ -n "${RECONCILER_ALLOW_DELETES:-}" ]; then
  if ! [[ $RECONCILER_ALLOW_DELETES =~ ^[0-9]+$ ]]; then
    error "allow-deletes must be a whole number, not '$RECONCILER_ALLOW_DELETES'"
    output result error
    exit 1
  fi
  allow=(--allow-deletes "$RECONCILER_ALLOW_DELETES")
fi

# The journals as names and sizes: an apply adds one, a continued apply adds to one.
journals() { find .reconciler/journal -name '*.jsonl' -printf '%f %s\n' 2> /dev/null | LC_ALL=C sort | cksum; }

# What to do about a block: a delete budget is lifted by the number the plan names, after review; a block no flag
# lifts (a read that came back incomplete) needs only a new plan, so the variable is not offered for it.
blocked_message() {
  local said=$1 what=$2 allowed reason
  allowed=$(grep -E -o -- '--allow-deletes [0-9][0-9,]*(` on the command line| to proceed)' "$said" 2> /dev/null \
    | head -1 | grep -o '[0-9][0-9,]*' | head -1 | tr -d ,)
  if [ -n "$allowed" ]; then
    echo "Blocked by a delete budget ($what). After reviewing every delete, set the repository variable RECONCILER_ALLOW_DELETES to $allowed and re-run; delete the variable once the apply has run."
  else
    reason=$(grep -m1 -E -o 'Blocked(\*\*)?: .*' "$said" 2> /dev/null | sed -E 's/^Blocked(\*\*)?: //')
    echo "Blocked, and no flag lifts it ($what): ${reason:-see the log}. Re-run once the cause is gone: the next run plans again."
  fi
}

case "$command" in
  validate)
    reconciler validate --offline "$path" 2> >(tee "$out/errors.txt" >&2)
    code=$?
    output exitcode "$code"
    if [ "$code" -ne 0 ]; then output result error; exit "$code"; fi
    output result valid
    ;;

  plan | drift)
    # The Markdown goes into the comment, the JSON plan and the HTML review page are uploaded.
    reconciler plan "$path" --format markdown --out "$out/plan.json" --out-html "$out/plan.html" \
      --detailed-exitcode "${allow[@]}" > "$out/plan.md" 2> >(tee "$out/errors.txt" >&2)
    code=$?
    output exitcode "$code"
    case "$code" in
      0) output result no-changes ;;
      2) output result changes ;;
      3)
        output result blocked
        if [ "$command" = plan ]; then
          output verdict fail
          output message "$(blocked_message "$out/plan.md" "read the plan comment")"
        fi
        ;;
      *) output result error; exit "$code" ;;
    esac
    output plan-json "$out/plan.json"
    if [ -f "$out/plan.html" ]; then output plan-html "$out/plan.html"; fi
    output plan-markdown "$out/plan.md"
    ;;

  apply | continue)
    before=$(journals)
    duration=()
    if [ -n "${RECONCILER_MAX_DURATION:-}" ]; then duration=(--max-duration "$RECONCILER_MAX_DURATION"); fi
    if [ "$command" = apply ]; then
      what=(apply "$path" --yes "${allow[@]}" "${duration[@]}")
    else
      # continue (the schedule): finish the newest apply, exactly the actions it planned (each re-checked
      # against the live state before it is sent), never a new plan: what changed in Nexudus since is the drift
      # check's to report and a reviewed change's to apply.
      newest=$(find .reconciler/journal -name '*.jsonl' 2> /dev/null | LC_ALL=C sort | tail -1)
      if [ -z "$newest" ]; then
        output result nothing-to-continue
        notice "no apply to continue: no journal of an earlier apply (they are kept in the Actions cache)"
        exit 0
      fi
      what=(apply --resume "$newest" --yes "${duration[@]}")
    fi
    # Progress goes to stderr every few seconds: shown live, and kept for the failure comment.
    reconciler "${what[@]}" 2> >(tee "$out/errors.txt" >&2) | tee "$out/apply.txt"
    code=${PIPESTATUS[0]}
    if [ "$command" = continue ] && [ "$code" -eq 0 ] && grep -q '^Resuming apply .*: 0 of ' "$out/apply.txt"; then
      output exitcode "$code"
      output result nothing-to-continue
      exit 0
    fi
    output exitcode "$code"
    if [ "$(journals)" != "$before" ]; then output journals changed; fi
    case "$code" in
      0) output result applied ;;
      3)
        if grep -q '^Stopped: ' "$out/apply.txt"; then
          # The daily write cap, --max-duration or a long server wait: the journal is intact, and the next
          # run (the schedule: continue) finishes it.
          output result stopped
          notice "$(grep '^Stopped: ' "$out/apply.txt" | head -1 | cut -c 10-); the next scheduled run continues"
        else
          output result blocked
          output verdict fail
          output message "$(blocked_message "$out/apply.txt" "it wrote nothing")"
        fi
        ;;
      4)
        output result failed
        output verdict fail
        output message "Some actions failed (see the table above); the journal is uploaded, and the next scheduled run (continue) retries them."
        ;;
      *) output result error; exit "$code" ;;
    esac
    ;;

  *)
    error "unknown command '$command': use validate, plan, apply, continue or drift"
    output result error
    exit 1
    ;;
esac
exit 0
