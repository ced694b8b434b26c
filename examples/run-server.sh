#!/usr/bin/env bash
# `make run`: the main job. Starts cairnd on DATA (default ./data), prints its URL and an admin key, loads a
# small demo workload under the demo- stream prefix so there are events to look at, then serves until
# Ctrl-C (SIGINT: cairnd answers what is in flight, closes the store and exits 0).
#
# The admin key is printed by cairnd only the first time it serves a data directory (keys are stored as
# hashes). For convenience on a development machine this script keeps that first key in .cairn-dev-key
# (mode 600, git-ignored, outside the data directory) so that later runs can show it again.
set -euo pipefail
CAIRND=${1:?usage: run-server.sh CAIRND [DATA_DIR] [ADDR:PORT]}
CAIRN=${CAIRN:-$(dirname "$CAIRND")/../cli/cairn}
DATA=${2:-./data}
HTTP=${3:-${CAIRN_HTTP:-127.0.0.1:2114}}
KEY_FILE=.cairn-dev-key
# Personal data (docs/privacy.md) needs a key store outside the data directory and a master key that is never
# written beside the data. For this development server both live next to the checkout, git-ignored; a real
# deployment keeps the master key in a secret store.
KEY_STORE=${CAIRN_KEY_STORE:-.cairn-dev-keys}
MASTER_FILE=.cairn-dev-master-key
[ -f "$MASTER_FILE" ] || (umask 077 && head -c 32 /dev/urandom | base64 > "$MASTER_FILE")
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

"$CAIRND" --data "$DATA" --http "$HTTP" --key-store "$KEY_STORE" --master-key-file "$MASTER_FILE" > >(tee "$LOG") 2>&1 &
PID=$!
trap 'kill -INT $PID 2>/dev/null; wait $PID; rm -f "$LOG"' INT TERM
for _ in $(seq 100); do
  grep -q "listening on" "$LOG" && break
  if ! kill -0 $PID 2>/dev/null; then wait $PID; exit $?; fi
  sleep 0.1
done
URL=$(grep -o 'http://[^ ]*' "$LOG" | head -1)
KEY=$(grep -o 'cairn_[0-9a-f]*' "$LOG" | head -1 || true)
if [ -n "$KEY" ]; then
  (umask 077 && printf '%s\n' "$KEY" > "$KEY_FILE")
elif [ -f "$KEY_FILE" ]; then
  KEY=$(cat "$KEY_FILE")
  # The kept key belongs to the data directory it was printed for; if $DATA was replaced since, say so
  # instead of running the demo into 401s.
  if [ "$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$URL/v1/stats")" = 401 ]; then
    echo "note: the admin key kept in $KEY_FILE does not open $DATA (the directory was replaced after it was" \
         "printed). The demo is skipped. To start afresh: stop, then delete $DATA and $KEY_FILE." >&2
    KEY=""
  fi
fi

post() {  # post STREAM BODY
  curl -sS -o /dev/null -w '%{http_code}' -X POST "$URL/v1/streams/$1" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "$2"
}
if [ -n "$KEY" ]; then
  run=$(date -u +%Y%m%dT%H%M%S)
  conv="demo-conversation-$run"
  codes=$(post "$conv" '{"expected_revision":"no_stream","events":[
      {"type":"ai.question.asked","data":{"question":"Which refund policy applies to order 1042?"},
       "metadata":{"correlation_id":"'"$run"'","actor":{"kind":"human","id":"user-7"}}},
      {"type":"ai.proposal.made","data":{"proposal_id":"p-'"$run"'","proposal_kind":"draft","skill":"refund_policy_answer","gen_ai.request.model":"m-1","input":{"question":"Which refund policy applies to order 1042?"},"proposed_value":"Full refund within 30 days"},
       "metadata":{"correlation_id":"'"$run"'","actor":{"kind":"ai_agent","id":"support-bot"}}}]}')
  codes="$codes $(post "$conv" '{"expected_revision":1,"events":[
      {"type":"human.decision.recorded","data":{"proposal_id":"p-'"$run"'","outcome":"edited","final_value":"Refund within 30 days, minus shipping"},
       "metadata":{"correlation_id":"'"$run"'","actor":{"kind":"human","id":"agent-3"}}},
      {"type":"feedback.given","data":{"target":"p-'"$run"'","name":"helpful","value":true,"source_kind":"reviewer"}}]}')"
  echo "demo workload: appended 4 events to $conv (HTTP $codes)"
  # A projection over the demo streams: proposals made and what humans did with them (idempotent: the same
  # definition posted again changes nothing).
  pcode=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$URL/v1/projections" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d '{"name":"demo-decisions","source":{"stream_prefix":"demo-"},
      "description":"AI proposals and the outcomes of the human decisions on them",
      "lua":"return function(s, e)\n  if e.type == \"ai.proposal.made\" then\n    s.proposals = (s.proposals or 0) + 1\n  elseif e.type == \"human.decision.recorded\" then\n    s.outcomes = s.outcomes or {}\n    local o = e.data.outcome or \"unknown\"\n    s.outcomes[o] = (s.outcomes[o] or 0) + 1\n  end\nend\n"}')
  echo "demo projection: demo-decisions (HTTP $pcode)"
  # Personal data: the customer's email is sealed under the subject's key; forget, purge and report below.
  ccode=$(post "demo-customer-$run" '{"events":[{"type":"customer.registered",
      "data":{"email":"ana-'"$run"'@example.org","plan":"pro"},
      "metadata":{"privacy":{"subject":"demo-user-'"$run"'","personal":["/email"]}}}]}')
  echo "demo personal data: demo-customer-$run, email sealed for subject demo-user-$run (HTTP $ccode)"
  # The AI ledger's demo history: support conversations with proposals from two models and two prompt
  # versions, human decisions, feedback and late corrections. The same seed always writes the same history.
  seed=$(date -u +%s)
  "$CAIRN" ai demo --url "$URL" --key "$KEY" --seed "$seed" --conversations 200
  decision=$(curl -sS -H "Authorization: Bearer $KEY" \
    "$URL/v1/events?type=human.decision.recorded&direction=backward&limit=1" | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
fi

cat <<TXT

Cairn is running.
  URL:        $URL
  admin key:  ${KEY:-"(printed when $DATA was first served; not stored in clear)"}

Try:
  curl -H "Authorization: Bearer ${KEY:-KEY}" "$URL/v1/events?direction=backward&limit=5"
  curl -N -H "Authorization: Bearer ${KEY:-KEY}" "$URL/v1/subscribe?stream_prefix=demo-"
  curl -H "Authorization: Bearer ${KEY:-KEY}" "$URL/v1/projections/demo-decisions/state"
  curl -H "Authorization: Bearer ${KEY:-KEY}" "$URL/v1/projections/%24streams/state?key=${conv:-demo-conversation-RUN}"
  curl -H "Authorization: Bearer ${KEY:-KEY}" "$URL/v1/ai/rates?by=model,prompt_version"
  $CAIRN ai rates --by model,prompt_version,skill --url $URL --key ${KEY:-KEY}
  $CAIRN why ${decision:-EVENT_ID} --url $URL --key ${KEY:-KEY}
  $CAIRN ai export --format preference --out prefs.jsonl --url $URL --key ${KEY:-KEY}
  curl -H "Authorization: Bearer ${KEY:-KEY}" "$URL/v1/streams/demo-customer-${run:-RUN}"
  $CAIRN privacy forget demo-user-${run:-RUN} --reason "demo erasure request" --url $URL --key ${KEY:-KEY}
  $CAIRN privacy purge --url $URL --key ${KEY:-KEY}
  $CAIRN privacy report demo-user-${run:-RUN} --url $URL --key ${KEY:-KEY}
API reference: docs/http-api.md, projections: docs/projections.md, the AI ledger: docs/ai-ledger.md,
personal data and erasure: docs/privacy.md.
Stop with Ctrl-C.
TXT
wait $PID
