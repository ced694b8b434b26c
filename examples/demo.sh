#!/usr/bin/env bash
# `make run`: the main job until the server exists. Appends a small AI-decision demo to the embedded
# store in DATA (default ./data) with the CLI, reads it back and verifies the log. Safe to run again:
# each run appends one more conversation under the demo- stream prefix.
set -euo pipefail
CAIRN=${1:?usage: demo.sh CAIRN_BINARY [DATA_DIR]}
export CAIRN_DATA=${2:-./data}
run=$(date -u +%Y%m%dT%H%M%S)-$$
conv="demo-conversation-$run"
corr="corr-$run"

echo "== Cairn demo: embedded store in $CAIRN_DATA (durability: fsync)"
"$CAIRN" append "$conv" ai.question.asked \
  '{"question":"Which refund policy applies to order 1042?"}' \
  --metadata "{\"correlation_id\":\"$corr\",\"actor\":{\"kind\":\"human\",\"id\":\"user-7\"}}" --expected no_stream
"$CAIRN" append "$conv" ai.proposal.made \
  "{\"proposal_id\":\"p-$run\",\"proposal_kind\":\"draft\",\"skill\":\"refund_policy_answer\",\"gen_ai.request.model\":\"m-1\",\"input\":{\"question\":\"Which refund policy applies to order 1042?\"},\"proposed_value\":\"Full refund within 30 days\"}" \
  --metadata "{\"correlation_id\":\"$corr\",\"actor\":{\"kind\":\"ai_agent\",\"id\":\"support-bot\"}}" --expected 0
printf '%s\n' \
  "{\"type\":\"human.decision.recorded\",\"data\":{\"proposal_id\":\"p-$run\",\"outcome\":\"edited\",\"final_value\":\"Refund within 30 days, minus shipping\"},\"metadata\":{\"actor\":{\"kind\":\"human\",\"id\":\"agent-3\"}}}" \
  "{\"type\":\"feedback.given\",\"data\":{\"target\":\"p-$run\",\"name\":\"helpful\",\"value\":true,\"source_kind\":\"reviewer\"}}" |
  "$CAIRN" append "$conv" --events - --expected 1

echo
echo "== the conversation, read back"
"$CAIRN" read "$conv"
echo
echo "== the last events of \$all"
"$CAIRN" tail -n 6
echo
echo "== the AI ledger: a generated history, its rates, one decision's lineage and a training export"
"$CAIRN" ai demo --seed "$(date -u +%s)" --conversations 100
"$CAIRN" ai rates --by model,prompt_version
"$CAIRN" why "$("$CAIRN" read --json --backward --limit 40 | grep -m1 '"type":"human.decision.recorded"' | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)"
"$CAIRN" ai export --format sft --out "${TMPDIR:-/tmp}/cairn-demo-sft.jsonl"
echo
echo "== integrity"
"$CAIRN" verify
echo
"$CAIRN" stats
