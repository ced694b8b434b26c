#include "pg/client.h"

#include <libpq-fe.h>

#include <poll.h>

#include <cstring>

#include <fmt/format.h>

namespace cairn::pg {
namespace {

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_be(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// SQLSTATE classes and codes → Cairn codes. Unknown states are I/O errors: the database refused, and the
// message says why.
ErrorCode code_for(std::string_view state) {
  if (state.empty()) return ErrorCode::kIoError;
  // Cairn's own states, raised by its functions (pg/migrations.cc).
  if (state == "CA001") return ErrorCode::kWrongExpectedRevision;
  if (state == "CA002") return ErrorCode::kInvalidArgument;
  if (state == "CA003") return ErrorCode::kDuplicateEventId;
  if (state == "23505") return ErrorCode::kDuplicateEventId;       // unique_violation
  if (state == "40001" || state == "40P01") return ErrorCode::kConflict;  // serialization failure, deadlock
  if (state == "57014") return ErrorCode::kTimeout;                // query_canceled (statement_timeout)
  if (state == "55P03") return ErrorCode::kBusy;                   // lock_not_available
  if (state == "22001" || state == "54000" || state == "54001") return ErrorCode::kLimitExceeded;
  if (state.starts_with("22") || state.starts_with("23")) return ErrorCode::kInvalidArgument;
  if (state == "XX001" || state == "XX002") return ErrorCode::kCorruption;  // data_corrupted, index_corrupted
  return ErrorCode::kIoError;  // 08 connection, 42 privileges/syntax, 53 resources, 57 shutdown, ...
}

}  // namespace

PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    if (r_) PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}
PgResult::~PgResult() {
  if (r_) PQclear(r_);
}
int PgResult::rows() const { return r_ ? PQntuples(r_) : 0; }
int PgResult::cols() const { return r_ ? PQnfields(r_) : 0; }
bool PgResult::null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
std::string_view PgResult::bytes(int row, int col) const {
  return {PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col))};
}
int64_t PgResult::int8(int row, int col) const {
  return static_cast<int64_t>(get_be(PQgetvalue(r_, row, col), 8));
}
int32_t PgResult::int4(int row, int col) const {
  return static_cast<int32_t>(get_be(PQgetvalue(r_, row, col), 4));
}
int16_t PgResult::int2(int row, int col) const {
  return static_cast<int16_t>(get_be(PQgetvalue(r_, row, col), 2));
}
bool PgResult::boolean(int row, int col) const { return PQgetvalue(r_, row, col)[0] != 0; }
Uuid PgResult::uuid(int row, int col) const {
  Uuid u;
  std::memcpy(u.bytes.data(), PQgetvalue(r_, row, col), 16);
  return u;
}

Params& Params::add(Oid type, std::string bytes) {
  types_.push_back(static_cast<uint32_t>(type));
  lengths_.push_back(static_cast<int>(bytes.size()));
  bufs_.push_back(std::move(bytes));
  nulls_.push_back(false);
  formats_.push_back(1);
  return *this;
}
Params& Params::null(Oid type) {
  add(type, {});
  nulls_.back() = true;
  return *this;
}
Params& Params::text(std::string_view v) { return add(Oid::kText, std::string(v)); }
Params& Params::bytea(std::string_view v) { return add(Oid::kBytea, std::string(v)); }
Params& Params::int8(int64_t v) {
  std::string b;
  put_be(b, static_cast<uint64_t>(v), 8);
  return add(Oid::kInt8, std::move(b));
}
Params& Params::int4(int32_t v) {
  std::string b;
  put_be(b, static_cast<uint32_t>(v), 4);
  return add(Oid::kInt4, std::move(b));
}
Params& Params::int2(int16_t v) {
  std::string b;
  put_be(b, static_cast<uint16_t>(v), 2);
  return add(Oid::kInt2, std::move(b));
}
Params& Params::boolean(bool v) { return add(Oid::kBool, std::string(1, v ? '\1' : '\0')); }
Params& Params::uuid(const Uuid& v) {
  return add(Oid::kUuid, std::string(reinterpret_cast<const char*>(v.bytes.data()), 16));
}

Params& Params::begin_array(Oid element_type) {
  array_.clear();
  array_elem_ = element_type;
  array_count_ = 0;
  switch (element_type) {
    case Oid::kBool: array_oid_ = static_cast<uint32_t>(Oid::kBoolArray); break;
    case Oid::kInt2: array_oid_ = static_cast<uint32_t>(Oid::kInt2Array); break;
    case Oid::kInt4: array_oid_ = static_cast<uint32_t>(Oid::kInt4Array); break;
    case Oid::kInt8: array_oid_ = static_cast<uint32_t>(Oid::kInt8Array); break;
    case Oid::kText: array_oid_ = static_cast<uint32_t>(Oid::kTextArray); break;
    case Oid::kBytea: array_oid_ = static_cast<uint32_t>(Oid::kByteaArray); break;
    case Oid::kUuid: array_oid_ = static_cast<uint32_t>(Oid::kUuidArray); break;
    default: throw std::logic_error("Params::begin_array: unsupported element type");
  }
  return *this;
}
void Params::el(std::string_view bytes) {
  put_be(array_, static_cast<uint32_t>(bytes.size()), 4);
  array_.append(bytes);
  ++array_count_;
}
Params& Params::el_text(std::string_view v) {
  el(v);
  return *this;
}
Params& Params::el_int8(int64_t v) {
  put_be(array_, 8, 4);
  put_be(array_, static_cast<uint64_t>(v), 8);
  ++array_count_;
  return *this;
}
Params& Params::el_int4(int32_t v) {
  put_be(array_, 4, 4);
  put_be(array_, static_cast<uint32_t>(v), 4);
  ++array_count_;
  return *this;
}
Params& Params::el_int2(int16_t v) {
  put_be(array_, 2, 4);
  put_be(array_, static_cast<uint16_t>(v), 2);
  ++array_count_;
  return *this;
}
Params& Params::el_bool(bool v) {
  put_be(array_, 1, 4);
  array_.push_back(v ? '\1' : '\0');
  ++array_count_;
  return *this;
}
Params& Params::el_uuid(const Uuid& v) {
  el(std::string_view(reinterpret_cast<const char*>(v.bytes.data()), 16));
  return *this;
}
Params& Params::end_array() {
  // Binary array: ndim, has-nulls flag, element type, then per dimension (size, lower bound 1), then the
  // elements, each as a length and its bytes. An empty array has no dimensions.
  std::string b;
  b.reserve(20 + array_.size());
  put_be(b, array_count_ ? 1 : 0, 4);
  put_be(b, 0, 4);
  put_be(b, static_cast<uint32_t>(array_elem_), 4);
  if (array_count_) {
    put_be(b, static_cast<uint32_t>(array_count_), 4);
    put_be(b, 1, 4);
  }
  b.append(array_);
  array_.clear();
  return add(static_cast<Oid>(array_oid_), std::move(b));
}

std::vector<const char*> Params::values() const {
  std::vector<const char*> v(bufs_.size());
  for (size_t i = 0; i < bufs_.size(); ++i) v[i] = nulls_[i] ? nullptr : bufs_[i].data();
  return v;
}

Status error_status(const pg_result* r, const pg_conn* c, std::string_view context) {
  std::string state, message;
  if (r) {
    const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (s) state = s;
    const char* m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    message = m ? m : PQresultErrorMessage(r);
    if (const char* d = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL)) message += fmt::format(" ({})", d);
    if (const char* h = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT)) message += fmt::format(" hint: {}", h);
  }
  if (message.empty() && c) message = PQerrorMessage(c);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  if (message.empty()) message = "unknown error";
  return Status(code_for(state), fmt::format("{}: postgres: {}{}", context, message,
                                             state.empty() ? "" : fmt::format(" [SQLSTATE {}]", state)));
}

namespace {
Result<PgResult> checked(PGresult* r, PGconn* c, std::string_view context) {
  PgResult res(r);
  if (!r) return error_status(nullptr, c, context);
  const auto st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_PIPELINE_SYNC) return res;
  if (st == PGRES_PIPELINE_ABORTED)
    return Status(ErrorCode::kConflict, fmt::format("{}: not run: an earlier statement of its pipeline failed", context));
  return error_status(r, c, context);
}
}  // namespace

Result<std::unique_ptr<Connection>> Connection::connect(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  if (!c) return Status::io_error("postgres: out of memory connecting");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string m = PQerrorMessage(c);
    PQfinish(c);
    while (!m.empty() && m.back() == '\n') m.pop_back();
    return Status::io_error(fmt::format("cannot connect to PostgreSQL: {}", m));
  }
  // Server notices ("role is already a member", ...) are not errors; libpq would print them on stderr.
  PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<Connection>(new Connection(c, conninfo));
}

Connection::~Connection() {
  if (c_) PQfinish(c_);
}

bool Connection::broken() const { return PQstatus(c_) != CONNECTION_OK; }

bool Connection::alive() {
  if (PQstatus(c_) != CONNECTION_OK || PQconsumeInput(c_) != 1 || PQstatus(c_) != CONNECTION_OK) return false;
  pollfd p{PQsocket(c_), POLLIN | POLLRDHUP, 0};
  return !(::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)));
}
int Connection::server_version() const { return PQserverVersion(c_); }

Result<PgResult> Connection::exec(const std::string& sql) {
  return checked(PQexec(c_, sql.c_str()), c_, "query");
}

Result<PgResult> Connection::query(const std::string& sql, const Params& params) {
  auto values = params.values();
  return checked(PQexecParams(c_, sql.c_str(), params.size(), params.types(), values.data(), params.lengths(),
                              params.formats(), 1),
                 c_, "query");
}

Status Connection::prepare(const std::string& name, const std::string& sql, const Params& params) {
  if (prepared_.count(name)) return {};
  auto r = checked(PQprepare(c_, name.c_str(), sql.c_str(), params.size(), params.types()), c_,
                   fmt::format("preparing {}", name));
  if (!r.ok()) return r.status();
  prepared_.insert(name);
  return {};
}

Result<PgResult> Connection::prepared(const std::string& name, const std::string& sql, const Params& params) {
  CAIRN_RETURN_IF_ERROR(prepare(name, sql, params));
  auto values = params.values();
  return checked(PQexecPrepared(c_, name.c_str(), params.size(), values.data(), params.lengths(), params.formats(), 1),
                 c_, name);
}

Status Connection::send_prepared(const std::string& name, const std::string& sql, const Params& params) {
  CAIRN_RETURN_IF_ERROR(prepare(name, sql, params));
  auto values = params.values();
  if (PQsendQueryPrepared(c_, name.c_str(), params.size(), values.data(), params.lengths(), params.formats(), 1) != 1)
    return error_status(nullptr, c_, name);
  return {};
}

Result<PgResult> Connection::receive(std::string_view context) {
  PGresult* first = PQgetResult(c_);
  // Drain to the end of this statement's results (the null), keeping the first.
  for (PGresult* more = first ? PQgetResult(c_) : nullptr; more; more = PQgetResult(c_)) PQclear(more);
  return checked(first, c_, context);
}

Status Connection::pipeline_begin() {
  if (PQenterPipelineMode(c_) != 1) return error_status(nullptr, c_, "entering pipeline mode");
  pipeline_pending_ = 0;
  return {};
}

Status Connection::pipeline_send(const std::string& name, const std::string& sql, const Params& params) {
  if (!prepared_.count(name))
    return Status::invalid_argument(fmt::format("pipeline: {} was not prepared before the pipeline began ({})", name, sql));
  auto values = params.values();
  if (PQsendQueryPrepared(c_, name.c_str(), params.size(), values.data(), params.lengths(), params.formats(), 1) != 1)
    return error_status(nullptr, c_, name);
  ++pipeline_pending_;
  return {};
}

Status Connection::pipeline_sync() {
  if (PQpipelineSync(c_) != 1) return error_status(nullptr, c_, "pipeline sync");
  ++pipeline_pending_;
  return {};
}

Result<PgResult> Connection::pipeline_next() {
  if (pipeline_pending_ == 0) return Status::invalid_argument("pipeline: no result pending");
  PGresult* r = PQgetResult(c_);
  if (!r) return error_status(nullptr, c_, "pipeline");
  // Each statement's result is followed by a null; the sync's result is not.
  if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
    PGresult* end = PQgetResult(c_);
    if (end) PQclear(end);
  }
  --pipeline_pending_;
  return checked(r, c_, "pipeline");
}

Status Connection::pipeline_end() {
  while (pipeline_pending_ > 0) (void)pipeline_next();
  if (PQexitPipelineMode(c_) != 1) return error_status(nullptr, c_, "leaving pipeline mode");
  return {};
}

Pool::Pool(std::string conninfo, size_t size, std::function<Status(Connection&)> on_connect)
    : conninfo_(std::move(conninfo)), size_(size ? size : 1), on_connect_(std::move(on_connect)) {}

Pool::~Pool() = default;

Pool::Lease::~Lease() {
  if (c_) pool_->give_back(std::move(c_));
}

Result<Pool::Lease> Pool::acquire(std::chrono::milliseconds timeout) {
  base::UniqueLock lk(mu_);
  if (!wait_for_free(lk, timeout))
    return Status(ErrorCode::kTimeout, fmt::format("no PostgreSQL connection free within {} ms (pool of {})",
                                                   timeout.count(), size_));
  while (!idle_.empty()) {
    auto c = std::move(idle_.back());
    idle_.pop_back();
    // A connection whose server went away (a restart, a terminated backend) has its socket closed: alive()
    // finds that without a round trip, and the connection is replaced instead of failing the caller's query.
    if (c->alive()) return Lease(this, std::move(c));
    --open_;
  }
  if (open_ >= size_) {
    // Every connection is leased (the wait above saw an idle one that turned out dead): wait again.
    if (!wait_for_free(lk, timeout))
      return Status(ErrorCode::kTimeout, fmt::format("no PostgreSQL connection free within {} ms (pool of {})",
                                                     timeout.count(), size_));
    lk.unlock();
    return acquire(timeout);
  }
  ++open_;
  lk.unlock();
  auto c = Connection::connect(conninfo_);
  Status st = c.ok() ? Status() : c.status();
  if (st.ok() && on_connect_) st = on_connect_(**c);
  if (!st.ok()) {
    base::MutexLock g(mu_);
    --open_;
    cv_.notify_one();
    return st;
  }
  return Lease(this, std::move(*c));
}

// cv_.wait_for with a predicate, spelled out so that the analysis sees idle_ and open_ read under mu_.
bool Pool::wait_for_free(base::UniqueLock& lk, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (idle_.empty() && open_ >= size_)
    if (cv_.wait_until(lk.native(), deadline) == std::cv_status::timeout) return !idle_.empty() || open_ < size_;
  return true;
}

void Pool::give_back(std::unique_ptr<Connection> c) {
  base::MutexLock g(mu_);
  // A broken connection, or one left inside a transaction by an error, is dropped; a new one replaces it.
  if (c->broken() || PQtransactionStatus(c->raw()) != PQTRANS_IDLE) {
    --open_;
  } else {
    idle_.push_back(std::move(c));
  }
  cv_.notify_one();
}

std::string quote_ident(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out.push_back('"');
    out.push_back(ch);
  }
  return out + "\"";
}

std::string quote_literal(std::string_view s) {
  std::string out = "'";
  for (char ch : s) {
    if (ch == '\'') out.push_back('\'');
    out.push_back(ch);
  }
  return out + "'";
}

}  // namespace cairn::pg
