// Immutability enforced by PostgreSQL itself: the application role, the table owner and even a superuser
// under session_replication_role = replica cannot change or remove an event; only the purge function can,
// and only into the form the event's digest already commits to. Tamper evidence: what a superuser changes
// behind the triggers' back, verify finds.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "cairn/postgres.h"
#include "cairn/store.h"
#include "log/record.h"
#include "log/sha256.h"
#include "pg/client.h"
#include "pg/migrations.h"
#include "pg/pg_test_env.h"
#include "privacy/personal.h"
#include "privacy/privacy_test_util.h"
#include "store/store_helpers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using testing::json_event;
using testing::one;

class Enforcement : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = testing::fresh_pg_db();
    PostgresOptions o;
    o.connection = db_.app;
    auto s = open_store(o);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    for (int i = 0; i < 5; ++i)
      ASSERT_TRUE((*s)->append(one("order-1", ExpectedRevision::any(), {json_event("order.placed", R"({"total":10})")})).ok());
    ASSERT_TRUE((*s)->close().ok());
    auto c = pg::Connection::connect(db_.app);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    app_ = std::move(*c);
    auto a = pg::Connection::connect(db_.admin);
    ASSERT_TRUE(a.ok()) << a.status().to_string();
    admin_ = std::move(*a);
  }

  // The statement must fail, with PostgreSQL's reason containing `why`.
  void refused(pg::Connection& c, const std::string& sql, const std::string& why) {
    auto r = c.exec(sql);
    EXPECT_FALSE(r.ok()) << "accepted: " << sql;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find(why), std::string::npos) << sql << " -> " << r.status().message();
    }
    (void)c.exec("ROLLBACK");
  }
  std::string one_value(pg::Connection& c, const std::string& sql) {
    auto r = c.exec(sql);
    EXPECT_TRUE(r.ok()) << sql << ": " << r.status().to_string();
    return r.ok() && r->rows() ? std::string(r->bytes(0, 0)) : "";
  }
  void unchanged() {
    EXPECT_EQ(one_value(*admin_, "SELECT count(*) FROM cairn.events"), "5");
    EXPECT_EQ(one_value(*admin_, "SELECT count(*) FROM cairn.events WHERE convert_from(data, 'UTF8') = '{\"total\":10}'"), "5");
  }

  testing::TempDir dir_;
  testing::PgDb db_;
  std::unique_ptr<pg::Connection> app_, admin_;
};

TEST_F(Enforcement, TheApplicationRoleCanOnlyReadAndCallTheAppendFunction) {
  pg::Connection& c = *app_;
  EXPECT_EQ(one_value(c, "SELECT count(*) FROM cairn.events"), "5");
  refused(c, "UPDATE cairn.events SET data = '\\x7b7d' WHERE position = 0", "permission denied");
  refused(c, "DELETE FROM cairn.events WHERE position = 0", "permission denied");
  refused(c, "TRUNCATE cairn.events", "permission denied");
  refused(c, "INSERT INTO cairn.events SELECT 99, 99, stream, 99, gen_random_uuid(), event_type, recorded_ns, content_type, "
             "flags, metadata, data, salt, digest, tx_id FROM cairn.events WHERE position = 0",
          "permission denied");
  refused(c, "ALTER TABLE cairn.events ADD COLUMN x int", "must be owner");
  refused(c, "ALTER TABLE cairn.events DISABLE TRIGGER events_no_update", "must be owner");
  refused(c, "ALTER TABLE cairn.events DISABLE TRIGGER ALL", "must be owner");
  refused(c, "DROP TRIGGER events_no_delete ON cairn.events", "must be owner");
  refused(c, "SET session_replication_role = replica", "permission denied");
  refused(c, "SELECT * FROM cairn.events FOR UPDATE", "permission denied");
  refused(c, "UPDATE cairn.streams SET last_revision = 0", "permission denied");
  refused(c, "UPDATE cairn.head SET next_position = 0", "permission denied");
  refused(c, "INSERT INTO cairn.seals VALUES (1, 0, 5, '\\x00', '\\x00')", "permission denied");
  refused(c, "SET cairn.purge_in_progress = 'on'; UPDATE cairn.events SET data = '\\x7b7d' WHERE position = 0",
          "permission denied");
  // The purge function turns nothing into anything its digest does not commit to.
  refused(c, "SELECT cairn.purge_parts(ARRAY[0]::int8[], ARRAY['\\x7b22746f74616c223a39397d']::bytea[], "
             "ARRAY['\\x7b22746f74616c223a39397d']::bytea[])",
          "purge refused");
  unchanged();
}

TEST_F(Enforcement, TheOwnerAndASuperuserAreStoppedByTriggersThatAlwaysFire) {
  pg::Connection& c = *admin_;
  // The owner (NOLOGIN; reached here through SET ROLE by the superuser).
  refused(c, "BEGIN; SET LOCAL ROLE cairn_owner; UPDATE cairn.events SET data = '\\x7b7d' WHERE position = 0", "immutable");
  refused(c, "BEGIN; SET LOCAL ROLE cairn_owner; DELETE FROM cairn.events WHERE position = 0", "immutable");
  refused(c, "BEGIN; SET LOCAL ROLE cairn_owner; TRUNCATE cairn.events", "immutable");
  refused(c, "BEGIN; SET LOCAL ROLE cairn_owner; SET LOCAL cairn.purge_in_progress = 'on'; "
             "UPDATE cairn.events SET data = '\\x7b7d' WHERE position = 0", "immutable");
  // A superuser with replication mode set: ENABLE ALWAYS triggers still fire.
  refused(c, "BEGIN; SET LOCAL session_replication_role = replica; UPDATE cairn.events SET data = '\\x7b7d'", "immutable");
  refused(c, "BEGIN; SET LOCAL session_replication_role = replica; DELETE FROM cairn.events", "immutable");
  refused(c, "BEGIN; SET LOCAL session_replication_role = replica; TRUNCATE cairn.events", "immutable");
  refused(c, "DELETE FROM cairn.events WHERE position = 4", "immutable");
  refused(c, "UPDATE cairn.seals SET chain_after = '\\x00'", "immutable");
  refused(c, "TRUNCATE cairn.seals", "immutable");
  // The purge role itself, flag set, may not change anything but sealed parts into their committed form.
  refused(c, "BEGIN; SET LOCAL ROLE cairn_purger; SET LOCAL cairn.purge_in_progress = 'on'; "
             "UPDATE cairn.events SET data = '\\x7b7d' WHERE position = 0", "immutable");
  EXPECT_EQ(one_value(c, "SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger "
                         "WHERE tgrelid = 'cairn.events'::regclass"),
            "events_no_delete:A,events_no_truncate:A,events_no_update:A");
  EXPECT_EQ(one_value(c, "SELECT r.rolcanlogin FROM pg_class t JOIN pg_roles r ON r.oid = t.relowner "
                         "WHERE t.oid = 'cairn.events'::regclass"),
            "f");
  unchanged();
}

TEST_F(Enforcement, VerifyFindsWhatASuperuserChangedBehindTheTriggers) {
  PostgresOptions o;
  o.connection = db_.app;
  {
    auto s = open_store(o);
    ASSERT_TRUE(s.ok());
    auto v = (*s)->verify_chain();  // seals everything first
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    EXPECT_TRUE(v->ok) << v->problem;
    EXPECT_EQ(v->events, 5u);
    EXPECT_GE(v->segments, 1u);
    (void)(*s)->close();
  }
  auto clean = pg_verify(db_.app);
  ASSERT_TRUE(clean.ok());
  ASSERT_TRUE(clean->ok) << clean->problem;
  // Only the root of trust can do this, and only by switching the guard off.
  pg::Connection& c = *admin_;
  ASSERT_TRUE(c.exec("ALTER TABLE cairn.events DISABLE TRIGGER events_no_update; "
                     "UPDATE cairn.events SET data = convert_to('{\"total\":99}', 'UTF8') WHERE position = 2; "
                     "ALTER TABLE cairn.events ENABLE ALWAYS TRIGGER events_no_update;")
                  .ok());
  auto broken = pg_verify(db_.app);
  ASSERT_TRUE(broken.ok());
  EXPECT_FALSE(broken->ok);
  EXPECT_EQ(broken->position.value_or(99), 2u);
  EXPECT_NE(broken->problem.find("digest"), std::string::npos) << broken->problem;
  // A consistent forgery (data and digest rewritten together) breaks the seal chain instead.
  log::Sha256 sha;
  std::string salt(16, '\1');
  const std::string forged = R"({"total":1})";
  auto d = log::payload_digest(sha, reinterpret_cast<const uint8_t*>(salt.data()), "", forged);
  ASSERT_TRUE(c.exec(fmt::format("ALTER TABLE cairn.events DISABLE TRIGGER events_no_update; "
                                 "UPDATE cairn.events SET data = convert_to('{}', 'UTF8'), salt = '\\x{}', metadata = '', "
                                 "digest = '\\x{}' WHERE position = 2; "
                                 "ALTER TABLE cairn.events ENABLE ALWAYS TRIGGER events_no_update;",
                                 forged, log::hex(reinterpret_cast<const uint8_t*>(salt.data()), 16), log::hex(d)))
                  .ok());
  broken = pg_verify(db_.app);
  ASSERT_TRUE(broken.ok());
  EXPECT_FALSE(broken->ok);
  EXPECT_NE(broken->problem.find("does not match the events"), std::string::npos) << broken->problem;
}

TEST_F(Enforcement, ThePurgeFunctionCanOnlyTurnSealedPartsIntoTheirMarkers) {
  PostgresOptions o;
  o.connection = db_.app;
  o.key_store_dir = dir_.sub("keys");
  o.master_key = privacy_test::kMaster;
  auto s = open_store(o);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  const std::string meta = R"({"privacy":{"subject":"carol","personal":["/email"]}})";
  auto r = (*s)->append(one("cust-9", ExpectedRevision::any(), {json_event("customer.registered", R"({"email":"carol@x.example","plan":"pro"})", meta)}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const uint64_t pos = r->streams[0].first_position;
  std::string stored;
  ASSERT_TRUE((*s)->scan_stored(pos, Filter{}, [&](const StoredEventView& v) {
                   stored = std::string(v.data);
                   return false;
                 }).ok());
  (void)(*s)->close();
  auto redacted = privacy::redactable_form(stored);
  ASSERT_TRUE(redacted.ok());
  ASSERT_EQ(redacted->size(), stored.size());
  const auto hex = [](const std::string& b) { return "'\\x" + log::hex(reinterpret_cast<const uint8_t*>(b.data()), b.size()) + "'::bytea"; };
  const auto call = [&](const std::string& data, const std::string& red) {
    return fmt::format("SELECT cairn.purge_parts(ARRAY[{}]::int8[], ARRAY[{}], ARRAY[{}])", pos, hex(data), hex(red));
  };
  // A byte outside the sealed part changed ("pro" -> "qro"): neither stored nor redacted.
  std::string outside = *redacted;
  const size_t plan = outside.find("\"pro\"") + 1;
  ASSERT_NE(plan, std::string::npos + 1);
  outside[plan] = 'q';
  refused(*app_, call(outside, *redacted), "neither stored nor redacted");
  // A "redacted form" that is not the committed one.
  refused(*app_, call(outside, outside), "digest commits to");
  // A different size.
  refused(*app_, call(*redacted + " ", *redacted + " "), "keeps the size");
  // The real thing passes: the part becomes its marker, nothing else changes.
  auto ok = app_->exec(call(*redacted, *redacted));
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(one_value(*admin_, fmt::format("SELECT flags FROM cairn.events WHERE position = {}", pos)), "6");
  auto v = pg_verify(db_.app);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
}

TEST_F(Enforcement, EnginesWithoutWorkingAdvisoryLocksOrSnapshotsAreRefused) {
  // A PostgreSQL-compatible engine whose advisory locks are no-ops, simulated by shadowing the function
  // ahead of pg_catalog in the search path of Cairn's session.
  ASSERT_TRUE(admin_->exec("CREATE SCHEMA fake; GRANT USAGE ON SCHEMA fake TO PUBLIC; "
                           "CREATE FUNCTION fake.pg_try_advisory_lock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';")
                  .ok());
  PostgresOptions o;
  o.connection = db_.app + " options='-csearch_path=fake,pg_catalog'";
  auto s = open_store(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("advisory locks do not exclude"), std::string::npos) << s.status().message();
  ASSERT_TRUE(admin_->exec("CREATE FUNCTION fake.pg_current_snapshot() RETURNS pg_snapshot LANGUAGE plpgsql AS "
                           "$$BEGIN RAISE EXCEPTION 'unsupported'; END$$;")
                  .ok());
  s = open_store(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("snapshot functions"), std::string::npos) << s.status().message();
}

// A database made by an older build (migration 1 only) is refused until `cairn pg migrate` brings it up to
// date; the migration keeps its events and the store then opens on it.
TEST_F(Enforcement, AnOlderSchemaIsRefusedUntilMigrated) {
  const std::string name = "cairn_old_" + std::to_string(::getpid());
  ASSERT_TRUE(admin_->exec("CREATE DATABASE " + name).ok());
  const std::string admin = db_.cluster->conninfo(db_.cluster->superuser(), name);
  auto old = pg::Connection::connect(admin);
  ASSERT_TRUE(old.ok());
  const pg::Migration& first = pg::migrations().front();
  ASSERT_EQ(first.version, 1);
  ASSERT_TRUE((*old)->exec("BEGIN; " + std::string(first.sql) +
                           "; INSERT INTO cairn.schema_migrations (version, name) VALUES (1, 'initial'); COMMIT;")
                  .ok());
  ASSERT_TRUE((*old)->exec("SELECT * FROM cairn.append(ARRAY[0], ARRAY['kept-1'], ARRAY[-1]::int8[], ARRAY[1], "
                           "ARRAY[gen_random_uuid()], ARRAY[false], ARRAY['t'], ARRAY[1]::int2[], ARRAY[0]::int2[], "
                           "ARRAY[''::bytea], ARRAY['\\x7b7d'::bytea], ARRAY['\\x00000000000000000000000000000000'::bytea], "
                           "ARRAY[sha256('\\x000000000000000000000000000000007b7d'::bytea)])")
                  .ok());
  PostgresOptions o;
  o.connection = db_.cluster->conninfo("cairn_app", name);
  auto s = open_store(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("cairn pg migrate"), std::string::npos) << s.status().message();
  auto m = pg_migrate(admin);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->from_version, 1);
  EXPECT_EQ(m->to_version, pg::latest_schema_version());
  ASSERT_FALSE(m->applied.empty());
  EXPECT_EQ(m->applied.front(), "0002 import");
  s = open_store(o);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ((*s)->head_position(), 1u);
  auto v = (*s)->verify_chain();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
}

TEST_F(Enforcement, SchemaVersionsAreCheckedAndMigrationsAreIdempotent) {
  auto again = pg_migrate(db_.admin);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_TRUE(again->applied.empty());
  EXPECT_EQ(again->to_version, pg::latest_schema_version());
  auto init_again = pg_init(db_.admin, PgInitOptions{});
  ASSERT_TRUE(init_again.ok()) << init_again.status().to_string();
  // A database without the schema, and one newer than this build, are refused with what to do.
  ASSERT_TRUE(admin_->exec("CREATE DATABASE cairn_empty_" + std::to_string(::getpid())).ok());
  PostgresOptions o;
  o.connection = db_.cluster->conninfo("cairn_app", "cairn_empty_" + std::to_string(::getpid()));
  auto s = open_store(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("cairn pg init"), std::string::npos) << s.status().message();
  ASSERT_TRUE(admin_->exec("INSERT INTO cairn.schema_migrations (version, name) VALUES (99, 'from the future')").ok());
  o.connection = db_.app;
  s = open_store(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("newer than this build"), std::string::npos) << s.status().message();
  auto m = pg_migrate(db_.admin);
  EXPECT_FALSE(m.ok());
}

}  // namespace
}  // namespace cairn
