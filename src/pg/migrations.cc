#include "pg/migrations.h"

namespace cairn::pg {
namespace {

// Migration 1: the tables, the immutability guards, the append, seal and purge functions, the grants.
// Positions are dense and in commit order: every append locks the one cairn.head row until it commits, so
// a reader that saw position p has seen every position below p (docs/scaling.md explains why this is the
// ordering method, and what it costs).
constexpr std::string_view kInitial = R"SQL(
CREATE SCHEMA cairn AUTHORIZATION cairn_owner;
SET LOCAL ROLE cairn_owner;

CREATE TABLE cairn.schema_migrations (
  version    int PRIMARY KEY,
  name       text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);

-- The next position and the last recorded time: one row, locked by every append until it commits.
CREATE TABLE cairn.head (
  id               boolean PRIMARY KEY DEFAULT true CHECK (id),
  next_position    bigint  NOT NULL,
  last_recorded_ns bigint  NOT NULL
);
INSERT INTO cairn.head VALUES (true, 0, 0);

-- Each stream's last revision: the optimistic-concurrency authority, changed only by cairn.append.
CREATE TABLE cairn.streams (
  stream         text   PRIMARY KEY,
  last_revision  bigint NOT NULL,
  first_position bigint NOT NULL,
  last_position  bigint NOT NULL
);

-- The log. Insert-only: triggers below refuse every UPDATE, DELETE and TRUNCATE except the privacy
-- purge's, which may only swap sealed personal parts for the redacted form the digest commits to.
CREATE TABLE cairn.events (
  position        bigint   PRIMARY KEY,
  commit_position bigint   NOT NULL,
  stream          text     NOT NULL,
  revision        bigint   NOT NULL,
  event_id        uuid     NOT NULL UNIQUE,
  event_type      text     NOT NULL,
  recorded_ns     bigint   NOT NULL,
  content_type    smallint NOT NULL,
  flags           smallint NOT NULL,  -- 2: sealed personal parts; 4: those parts purged
  metadata        bytea    NOT NULL,
  data            bytea    NOT NULL,
  salt            bytea    NOT NULL,  -- 16 random bytes of the payload digest
  digest          bytea    NOT NULL,  -- SHA-256(salt || metadata || redactable form of data)
  tx_id           xid8     NOT NULL DEFAULT pg_current_xact_id(),
  UNIQUE (stream, revision)
);

-- Tamper evidence: a chain over committed events, in position order, in insert-only batches.
CREATE TABLE cairn.seals (
  seal_no        bigint PRIMARY KEY,
  first_position bigint NOT NULL,
  end_position   bigint NOT NULL CHECK (end_position > first_position),
  chain_before   bytea  NOT NULL,
  chain_after    bytea  NOT NULL,
  sealed_at      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION cairn.refuse_change() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  -- Nested, not one AND: the row fields exist only for UPDATE on events.
  IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'events' AND current_user = 'cairn_purger'
     AND current_setting('cairn.purge_in_progress', true) = 'on' THEN
    IF NEW.position = OLD.position AND NEW.commit_position = OLD.commit_position AND NEW.stream = OLD.stream
     AND NEW.revision = OLD.revision AND NEW.event_id = OLD.event_id AND NEW.event_type = OLD.event_type
     AND NEW.recorded_ns = OLD.recorded_ns AND NEW.content_type = OLD.content_type AND NEW.metadata = OLD.metadata
     AND NEW.salt = OLD.salt AND NEW.digest = OLD.digest AND NEW.tx_id = OLD.tx_id
     AND (OLD.flags & 2) <> 0 AND NEW.flags = (OLD.flags | 4)
     AND octet_length(NEW.data) = octet_length(OLD.data) THEN
      RETURN NEW;
    END IF;
  END IF;
  RAISE EXCEPTION 'cairn: % on %.% refused: the log is immutable (a correction is a new event; personal data is erased with cairn privacy forget and purge)',
    TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $fn$;

CREATE TRIGGER events_no_update BEFORE UPDATE ON cairn.events FOR EACH ROW EXECUTE FUNCTION cairn.refuse_change();
CREATE TRIGGER events_no_delete BEFORE DELETE ON cairn.events FOR EACH ROW EXECUTE FUNCTION cairn.refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON cairn.events FOR EACH STATEMENT EXECUTE FUNCTION cairn.refuse_change();
CREATE TRIGGER seals_no_update BEFORE UPDATE ON cairn.seals FOR EACH ROW EXECUTE FUNCTION cairn.refuse_change();
CREATE TRIGGER seals_no_delete BEFORE DELETE ON cairn.seals FOR EACH ROW EXECUTE FUNCTION cairn.refuse_change();
CREATE TRIGGER seals_no_truncate BEFORE TRUNCATE ON cairn.seals FOR EACH STATEMENT EXECUTE FUNCTION cairn.refuse_change();
-- ALWAYS: they fire even under session_replication_role = replica.
ALTER TABLE cairn.events ENABLE ALWAYS TRIGGER events_no_update;
ALTER TABLE cairn.events ENABLE ALWAYS TRIGGER events_no_delete;
ALTER TABLE cairn.events ENABLE ALWAYS TRIGGER events_no_truncate;
ALTER TABLE cairn.seals ENABLE ALWAYS TRIGGER seals_no_update;
ALTER TABLE cairn.seals ENABLE ALWAYS TRIGGER seals_no_delete;
ALTER TABLE cairn.seals ENABLE ALWAYS TRIGGER seals_no_truncate;

-- One group of appends from one cairnd writer (its group commit), in one transaction. Stream appends
-- (parts) belong to requests (p_req, ascending); a request is atomic, requests are independent: one that
-- fails its checks changes nothing and does not disturb the others. Events are flattened in part order.
-- p_expected: -1 any, -2 no stream, -3 exists, n >= 0 the exact revision. Per part it returns o_status
-- 0 appended, 1 an idempotent retry answered from the original append, 2 wrong expected revision
-- (o_actual: the stream's revision, -1 none), 3 duplicate event id (o_detail), 4 not appended because
-- another part of its request failed; o_position and o_revision are the part's first.
CREATE FUNCTION cairn.append(
  p_req int4[], p_stream text[], p_expected int8[], p_count int4[],
  p_id uuid[], p_supplied bool[], p_type text[], p_ctype int2[], p_flags int2[],
  p_meta bytea[], p_data bytea[], p_salt bytea[], p_digest bytea[])
RETURNS TABLE (o_status int2, o_actual int8, o_position int8, o_revision int8, o_detail text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  n int := coalesce(array_length(p_stream, 1), 0);
  v_next int8; v_last_ns int8; v_now int8;
  st int2[]; act int8[]; pos int8[]; rev int8[]; cmt int8[]; det text[]; first_k int4[];
  i int; j int; k int; rs int; re int; ks int; ke int;
  cur int8; ok bool; any_dup bool;
  loc_stream text[]; loc_rev int8[]; li int;
  found_n int; first_pos int8; e record; prev_pos int8; msg text; part int;
BEGIN
  IF n = 0 THEN RETURN; END IF;
  SELECT h.next_position, h.last_recorded_ns INTO v_next, v_last_ns FROM cairn.head h WHERE h.id FOR UPDATE;
  v_now := greatest((extract(epoch FROM clock_timestamp()) * 1000000)::int8 * 1000, v_last_ns);
  st := array_fill(0::int2, ARRAY[n]); act := array_fill(-1::int8, ARRAY[n]);
  pos := array_fill(-1::int8, ARRAY[n]); rev := array_fill(-1::int8, ARRAY[n]); cmt := array_fill(-1::int8, ARRAY[n]);
  det := array_fill(NULL::text, ARRAY[n]); first_k := array_fill(0, ARRAY[n]);
  k := 1;
  FOR i IN 1..n LOOP first_k[i] := k; k := k + p_count[i]; END LOOP;
  SELECT EXISTS (SELECT 1 FROM unnest(p_id, p_supplied) AS x(id, s) JOIN cairn.events ev ON ev.event_id = x.id WHERE x.s)
    INTO any_dup;
  i := 1;
  WHILE i <= n LOOP
    rs := i;
    WHILE i <= n AND p_req[i] = p_req[rs] LOOP i := i + 1; END LOOP;
    re := i - 1;
    ks := first_k[rs]; ke := first_k[re] + p_count[re] - 1;
    IF any_dup THEN
      -- Idempotency: a retry must repeat the whole original append, in place, with the same content.
      found_n := 0; first_pos := NULL; msg := NULL; part := rs;
      FOR k IN ks..ke LOOP
        WHILE k >= first_k[part] + p_count[part] LOOP part := part + 1; END LOOP;
        IF NOT p_supplied[k] THEN CONTINUE; END IF;
        SELECT * INTO e FROM cairn.events ev WHERE ev.event_id = p_id[k];
        IF NOT FOUND THEN CONTINUE; END IF;
        found_n := found_n + 1;
        IF first_pos IS NULL THEN first_pos := e.position - (k - ks); END IF;
        IF msg IS NULL AND (e.position <> first_pos + (k - ks) OR e.stream <> p_stream[part]) THEN
          msg := format('event id %s already exists (position %s, stream ''%s'', revision %s) with %s', p_id[k], e.position,
                        e.stream, e.revision, CASE WHEN e.stream <> p_stream[part] THEN 'another stream' ELSE 'different content or order' END);
        ELSIF msg IS NULL AND (e.event_type <> p_type[k] OR e.content_type <> p_ctype[k] OR e.metadata <> p_meta[k]
                               OR (e.data <> p_data[k] AND (e.flags & 4) = 0)) THEN
          msg := format('event id %s already exists (position %s, stream ''%s'', revision %s) with different content or order',
                        p_id[k], e.position, e.stream, e.revision);
        END IF;
        IF k = first_k[part] THEN
          pos[part] := e.position; rev[part] := e.revision;
          IF msg IS NULL AND NOT (p_expected[part] = -1 OR (p_expected[part] = -2 AND e.revision = 0)
                                  OR (p_expected[part] = -3 AND e.revision > 0) OR e.revision = p_expected[part] + 1) THEN
            msg := format('event id %s was appended at revision %s of stream ''%s'', which expected revision %s cannot have produced',
                          p_id[k], e.revision, e.stream, CASE p_expected[part] WHEN -1 THEN 'any' WHEN -2 THEN 'no_stream'
                          WHEN -3 THEN 'exists' ELSE p_expected[part]::text END);
          END IF;
        END IF;
      END LOOP;
      IF found_n > 0 THEN
        IF msg IS NULL AND found_n < ke - ks + 1 THEN
          msg := format('event id %s already exists (position %s), but this append is not a repeat of the one that wrote it',
                        (SELECT x.id FROM unnest(p_id[ks:ke]) x(id) JOIN cairn.events ev ON ev.event_id = x.id LIMIT 1), first_pos);
        END IF;
        IF msg IS NULL AND (NOT EXISTS (SELECT 1 FROM cairn.events ev WHERE ev.position = first_pos AND ev.commit_position = first_pos)
            OR EXISTS (SELECT 1 FROM cairn.events ev WHERE ev.position = first_pos + (ke - ks) + 1 AND ev.commit_position = first_pos)) THEN
          msg := format('event id %s was appended (position %s) in a commit that this append does not repeat exactly (a retry must resend the whole original append)',
                        p_id[ks], first_pos);
        END IF;
        FOR j IN rs..re LOOP
          IF msg IS NULL THEN st[j] := 1; ELSE st[j] := 3; det[j] := msg; END IF;
        END LOOP;
        CONTINUE;
      END IF;
    END IF;
    -- Expected revisions, with a request-local view (a stream may appear twice in one request).
    loc_stream := '{}'; loc_rev := '{}'; ok := true;
    FOR j IN rs..re LOOP
      li := array_position(loc_stream, p_stream[j]);
      IF li IS NOT NULL THEN
        cur := loc_rev[li];
      ELSE
        cur := NULL;
        SELECT s.last_revision INTO cur FROM cairn.streams s WHERE s.stream = p_stream[j];
      END IF;
      IF (p_expected[j] = -2 AND cur IS NOT NULL) OR (p_expected[j] = -3 AND cur IS NULL)
         OR (p_expected[j] >= 0 AND (cur IS NULL OR cur <> p_expected[j])) THEN
        st[j] := 2; act[j] := coalesce(cur, -1); ok := false;
        EXIT;
      END IF;
      rev[j] := coalesce(cur + 1, 0);
      IF li IS NULL THEN
        loc_stream := loc_stream || p_stream[j]; loc_rev := loc_rev || (rev[j] + p_count[j] - 1);
      ELSE
        loc_rev[li] := rev[j] + p_count[j] - 1;
      END IF;
    END LOOP;
    IF NOT ok THEN
      FOR j IN rs..re LOOP
        IF st[j] = 0 THEN st[j] := 4; rev[j] := -1; END IF;
      END LOOP;
      CONTINUE;
    END IF;
    FOR j IN rs..re LOOP
      pos[j] := v_next; cmt[j] := pos[rs]; v_next := v_next + p_count[j];
      INSERT INTO cairn.streams AS s (stream, last_revision, first_position, last_position)
        VALUES (p_stream[j], rev[j] + p_count[j] - 1, pos[j], v_next - 1)
        ON CONFLICT (stream) DO UPDATE SET last_revision = excluded.last_revision, last_position = excluded.last_position;
    END LOOP;
  END LOOP;
  INSERT INTO cairn.events (position, commit_position, stream, revision, event_id, event_type, recorded_ns, content_type,
                            flags, metadata, data, salt, digest)
  SELECT pa.pos + (g.k - pa.fk), pa.cmt, pa.stream, pa.rev + (g.k - pa.fk), x.id, x.typ, v_now, x.ct, x.fl, x.meta, x.dat,
         x.salt, x.dig
  FROM unnest(pos, rev, cmt, first_k, p_count, p_stream, st) AS pa(pos, rev, cmt, fk, cnt, stream, st)
  CROSS JOIN LATERAL generate_series(pa.fk, pa.fk + pa.cnt - 1) AS g(k)
  JOIN unnest(p_id, p_type, p_ctype, p_flags, p_meta, p_data, p_salt, p_digest) WITH ORDINALITY
       AS x(id, typ, ct, fl, meta, dat, salt, dig, k) ON x.k = g.k
  WHERE pa.st = 0;
  UPDATE cairn.head SET next_position = v_next, last_recorded_ns = v_now WHERE id;
  RETURN QUERY SELECT * FROM unnest(st, act, pos, rev, det);
END $fn$;

-- The record of one event in the seal chain: everything the log commits to about it, with the payload
-- through its digest (so the purge, which keeps the digest, keeps the chain). 92 bytes plus the stream's
-- and the type's UTF-8 bytes, each after its length.
CREATE FUNCTION cairn.seal_record(e cairn.events) RETURNS bytea LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT int8send(e.position) || int8send(e.commit_position) || int8send(e.revision) || int8send(e.recorded_ns)
      || uuid_send(e.event_id) || int2send(e.content_type) || int2send((e.flags & ~4)::int2) || e.digest
      || int4send(octet_length(e.stream)) || textsend(e.stream)
      || int4send(octet_length(e.event_type)) || textsend(e.event_type)
$fn$;

-- Seals the committed events after the last seal, up to p_max of them, as one new seal row:
-- chain_after = SHA-256(chain_before || seal_record of each event in position order). Returns the new
-- seal's end and chain, or nothing when there was nothing to seal or another sealer runs.
CREATE FUNCTION cairn.seal(p_max int4)
RETURNS TABLE (o_seal_no int8, o_end int8, o_chain bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  v_no int8; v_from int8; v_chain bytea; v_head int8; v_to int8; v_count int8; v_after bytea;
BEGIN
  IF NOT pg_try_advisory_xact_lock(7238132941730542) THEN RETURN; END IF;
  SELECT s.seal_no, s.end_position, s.chain_after INTO v_no, v_from, v_chain FROM cairn.seals s ORDER BY s.seal_no DESC LIMIT 1;
  IF NOT FOUND THEN v_no := 0; v_from := 0; v_chain := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea; END IF;
  SELECT h.next_position INTO v_head FROM cairn.head h WHERE h.id;
  v_to := least(v_head, v_from + p_max);
  IF v_to <= v_from THEN RETURN; END IF;
  SELECT count(*), sha256(v_chain || string_agg(cairn.seal_record(ev), ''::bytea ORDER BY ev.position))
    INTO v_count, v_after FROM cairn.events ev WHERE ev.position >= v_from AND ev.position < v_to;
  IF v_count <> v_to - v_from THEN
    RAISE EXCEPTION 'cairn: positions % to % should all be committed, % are: the log has a hole', v_from, v_to - 1, v_count
      USING ERRCODE = 'data_corrupted';
  END IF;
  INSERT INTO cairn.seals (seal_no, first_position, end_position, chain_before, chain_after)
    VALUES (v_no + 1, v_from, v_to, v_chain, v_after);
  RETURN QUERY SELECT v_no + 1, v_to, v_after;
END $fn$;

RESET ROLE;

-- The purge: owned by its own role, the only one the update trigger lets through. For each event it takes
-- the new data and the event's redacted form (every sealed part replaced by its marker, same size), and
-- refuses unless that redacted form is the one the event's digest commits to and every byte of the new data
-- is either the stored byte or the redacted form's byte at the same offset. So a caller can only turn sealed
-- parts into their markers (all of them, or those of forgotten subjects), never change anything else.
CREATE FUNCTION cairn.purge_parts(p_positions int8[], p_data bytea[], p_redacted bytea[]) RETURNS int8
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  v_n int8 := coalesce(array_length(p_positions, 1), 0);
  e record; i int; v_new bytea; v_red bytea;
BEGIN
  IF coalesce(array_length(p_data, 1), 0) <> v_n OR coalesce(array_length(p_redacted, 1), 0) <> v_n THEN
    RAISE EXCEPTION 'cairn: purge refused: % positions, % data and % redacted forms', v_n,
      coalesce(array_length(p_data, 1), 0), coalesce(array_length(p_redacted, 1), 0) USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR i IN 1..v_n LOOP
    v_new := p_data[i]; v_red := p_redacted[i];
    SELECT ev.salt, ev.metadata, ev.data, ev.digest, ev.flags INTO e FROM cairn.events ev WHERE ev.position = p_positions[i];
    IF NOT FOUND THEN
      RAISE EXCEPTION 'cairn: purge refused: position % does not exist', p_positions[i] USING ERRCODE = 'no_data_found';
    END IF;
    IF (e.flags & 2) = 0 THEN
      RAISE EXCEPTION 'cairn: purge refused: position % has no sealed personal parts', p_positions[i]
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF octet_length(v_new) <> octet_length(e.data) OR octet_length(v_red) <> octet_length(e.data) THEN
      RAISE EXCEPTION 'cairn: purge refused: position %: a purge keeps the size of the data', p_positions[i]
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF sha256(e.salt || e.metadata || v_red) <> e.digest THEN
      RAISE EXCEPTION 'cairn: purge refused: position %: the redacted form given is not the one its digest commits to',
        p_positions[i] USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF EXISTS (SELECT 1 FROM generate_series(0, octet_length(v_new) - 1) AS g(b)
               WHERE get_byte(v_new, g.b) <> get_byte(e.data, g.b) AND get_byte(v_new, g.b) <> get_byte(v_red, g.b)) THEN
      RAISE EXCEPTION 'cairn: purge refused: position %: the new data changes bytes that are neither stored nor redacted',
        p_positions[i] USING ERRCODE = 'insufficient_privilege';
    END IF;
  END LOOP;
  PERFORM set_config('cairn.purge_in_progress', 'on', true);
  UPDATE cairn.events ev SET data = x.dat, flags = (ev.flags | 4)::int2
    FROM unnest(p_positions, p_data) AS x(pos, dat)
    WHERE ev.position = x.pos;
  PERFORM set_config('cairn.purge_in_progress', 'off', true);
  RETURN v_n;
END $fn$;
GRANT CREATE ON SCHEMA cairn TO cairn_purger;
ALTER FUNCTION cairn.purge_parts(int8[], bytea[], bytea[]) OWNER TO cairn_purger;
REVOKE CREATE ON SCHEMA cairn FROM cairn_purger;
GRANT USAGE ON SCHEMA cairn TO cairn_purger;
GRANT SELECT ON cairn.events TO cairn_purger;
GRANT UPDATE (data, flags) ON cairn.events TO cairn_purger;

REVOKE ALL ON FUNCTION cairn.append(int4[], text[], int8[], int4[], uuid[], bool[], text[], int2[], int2[], bytea[], bytea[], bytea[], bytea[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION cairn.seal(int4) FROM PUBLIC;
REVOKE ALL ON FUNCTION cairn.purge_parts(int8[], bytea[], bytea[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION cairn.refuse_change() FROM PUBLIC;
GRANT USAGE ON SCHEMA cairn TO cairn_reader, cairn_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA cairn TO cairn_reader, cairn_writer;
GRANT EXECUTE ON FUNCTION cairn.append(int4[], text[], int8[], int4[], uuid[], bool[], text[], int2[], int2[], bytea[], bytea[], bytea[], bytea[]) TO cairn_writer;
GRANT EXECUTE ON FUNCTION cairn.seal(int4) TO cairn_writer;
GRANT EXECUTE ON FUNCTION cairn.purge_parts(int8[], bytea[], bytea[]) TO cairn_privacy;
)SQL";

// Migration 2: imports. One exported commit appended as one commit, keeping each event's stream revision,
// id, recorded time, salt and digest (so an import of a whole export into an empty database reproduces its
// positions). Errors use Cairn's own SQLSTATEs (class CA, mapped in pg/client.cc): CA001 a revision that
// does not continue its stream, CA002 bad input, CA003 an id that exists.
constexpr std::string_view kImport = R"SQL(
SET LOCAL ROLE cairn_owner;
CREATE FUNCTION cairn.import_commit(
  p_stream text[], p_revision int8[], p_id uuid[], p_type text[], p_recorded int8[], p_ctype int2[], p_flags int2[],
  p_meta bytea[], p_data bytea[], p_salt bytea[], p_digest bytea[])
RETURNS int8
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  n int := coalesce(array_length(p_stream, 1), 0);
  v_next int8; v_last_ns int8; i int; cur int8; li int;
  loc_stream text[] := '{}'; loc_rev int8[] := '{}'; v_dup uuid;
BEGIN
  IF n = 0 THEN RAISE EXCEPTION 'events: a commit has at least one event' USING ERRCODE = 'CA002'; END IF;
  SELECT h.next_position, h.last_recorded_ns INTO v_next, v_last_ns FROM cairn.head h WHERE h.id FOR UPDATE;
  SELECT x.id INTO v_dup FROM unnest(p_id) AS x(id) JOIN cairn.events ev ON ev.event_id = x.id LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'events[%].id: event id % already exists', array_position(p_id, v_dup) - 1, v_dup USING ERRCODE = 'CA003';
  END IF;
  IF (SELECT count(DISTINCT x.id) FROM unnest(p_id) AS x(id)) <> n THEN
    RAISE EXCEPTION 'events: an event id appears twice in the commit' USING ERRCODE = 'CA003';
  END IF;
  FOR i IN 1..n LOOP
    li := array_position(loc_stream, p_stream[i]);
    IF li IS NOT NULL THEN
      cur := loc_rev[li];
    ELSE
      cur := NULL;
      SELECT s.last_revision INTO cur FROM cairn.streams s WHERE s.stream = p_stream[i];
    END IF;
    IF p_revision[i] <> coalesce(cur + 1, 0) THEN
      RAISE EXCEPTION 'events[%]: stream ''%'' revision % does not continue the stream (its next revision is %)',
        i - 1, p_stream[i], p_revision[i], coalesce(cur + 1, 0) USING ERRCODE = 'CA001';
    END IF;
    IF p_recorded[i] < v_last_ns THEN
      RAISE EXCEPTION 'events[%].recorded_at: earlier than the log''s last recorded time; recorded times never go back', i - 1
        USING ERRCODE = 'CA002';
    END IF;
    v_last_ns := p_recorded[i];
    IF li IS NULL THEN
      loc_stream := loc_stream || p_stream[i]; loc_rev := loc_rev || p_revision[i];
    ELSE
      loc_rev[li] := p_revision[i];
    END IF;
    INSERT INTO cairn.streams AS s (stream, last_revision, first_position, last_position)
      VALUES (p_stream[i], p_revision[i], v_next + i - 1, v_next + i - 1)
      ON CONFLICT (stream) DO UPDATE SET last_revision = excluded.last_revision, last_position = excluded.last_position;
  END LOOP;
  INSERT INTO cairn.events (position, commit_position, stream, revision, event_id, event_type, recorded_ns, content_type,
                            flags, metadata, data, salt, digest)
  SELECT v_next + x.k - 1, v_next, x.stream, x.rev, x.id, x.typ, x.rec, x.ct, x.fl, x.meta, x.dat, x.salt, x.dig
  FROM unnest(p_stream, p_revision, p_id, p_type, p_recorded, p_ctype, p_flags, p_meta, p_data, p_salt, p_digest)
       WITH ORDINALITY AS x(stream, rev, id, typ, rec, ct, fl, meta, dat, salt, dig, k);
  UPDATE cairn.head SET next_position = v_next + n, last_recorded_ns = v_last_ns WHERE id;
  RETURN v_next;
END $fn$;
RESET ROLE;
REVOKE ALL ON FUNCTION cairn.import_commit(text[], int8[], uuid[], text[], int8[], int2[], int2[], bytea[], bytea[], bytea[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cairn.import_commit(text[], int8[], uuid[], text[], int8[], int2[], int2[], bytea[], bytea[], bytea[], bytea[]) TO cairn_writer;
)SQL";

}  // namespace

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> all = {{1, "initial", kInitial}, {2, "import", kImport}};
  return all;
}

int latest_schema_version() { return migrations().back().version; }

}  // namespace cairn::pg
