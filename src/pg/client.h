// A small RAII layer over libpq: connections, results, binary parameters (arrays included), prepared
// statements, pipeline mode and a connection pool, with PostgreSQL errors mapped to Cairn's error codes.
//
// Why hand-written: libpqxx 6.4 (Debian 12) has no pipeline mode and no binary arrays; libpq is the
// supported C interface, and this layer is only the part Cairn uses.
// Ownership: Connection owns its PGconn, PgResult its PGresult; both are move-only. Params owns its buffers
// and must outlive the call it is passed to.
// Thread safety: one Connection is used by one thread at a time (libpq's rule). Pool is thread-safe; a
// Lease gives one thread exclusive use of one connection until it is destroyed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/event.h"
#include "cairn/status.h"
#include "base/mutex.h"

struct pg_conn;
struct pg_result;

namespace cairn::pg {

// Type OIDs of the binary parameters Cairn sends (pg_type.h).
enum class Oid : uint32_t {
  kBool = 16, kBytea = 17, kInt8 = 20, kInt2 = 21, kInt4 = 23, kText = 25, kUuid = 2950,
  kBoolArray = 1000, kInt2Array = 1005, kInt4Array = 1007, kTextArray = 1009, kByteaArray = 1001,
  kInt8Array = 1016, kUuidArray = 2951,
};

// A result; rows and columns are binary unless the statement was sent as simple text (exec()).
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(pg_result* r) : r_(r) {}
  PgResult(PgResult&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  PgResult& operator=(PgResult&& o) noexcept;
  ~PgResult();

  int rows() const;
  int cols() const;
  bool null(int row, int col) const;
  std::string_view bytes(int row, int col) const;  // raw value (binary or text as sent)
  // Binary-format decoders (the column must be of that type).
  int64_t int8(int row, int col) const;
  int32_t int4(int row, int col) const;
  int16_t int2(int row, int col) const;
  bool boolean(int row, int col) const;
  Uuid uuid(int row, int col) const;
  pg_result* get() const { return r_; }

 private:
  pg_result* r_ = nullptr;
};

// Parameters in binary format. Arrays are one-dimensional and have no NULL elements.
class Params {
 public:
  Params& null(Oid type);
  Params& text(std::string_view v);
  Params& bytea(std::string_view v);
  Params& int8(int64_t v);
  Params& int4(int32_t v);
  Params& int2(int16_t v);
  Params& boolean(bool v);
  Params& uuid(const Uuid& v);
  // Arrays: begin one, add its elements with the element adders, end it.
  Params& begin_array(Oid element_type);
  Params& el_text(std::string_view v);   // also for bytea elements
  Params& el_int8(int64_t v);
  Params& el_int4(int32_t v);
  Params& el_int2(int16_t v);
  Params& el_bool(bool v);
  Params& el_uuid(const Uuid& v);
  Params& end_array();

  int size() const { return static_cast<int>(types_.size()); }
  // Stable only once every parameter was added.
  const uint32_t* types() const { return types_.data(); }
  std::vector<const char*> values() const;
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  Params& add(Oid type, std::string bytes);
  void el(std::string_view bytes);
  std::vector<uint32_t> types_;
  std::vector<std::string> bufs_;
  std::vector<bool> nulls_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
  // The array being built.
  std::string array_;
  uint32_t array_oid_ = 0;
  Oid array_elem_{};
  int32_t array_count_ = 0;
};

// Maps a failed result (or connection) to a Status: the SQLSTATE picks the code, the message keeps
// PostgreSQL's primary message, detail and hint, prefixed with `context`.
Status error_status(const pg_result* r, const pg_conn* c, std::string_view context);

class Connection {
 public:
  // Connects (libpq conninfo or postgres:// URI). kIoError naming the server when it cannot.
  static Result<std::unique_ptr<Connection>> connect(const std::string& conninfo);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // One or more SQL statements in the simple protocol, text results (DDL, migrations, SET).
  Result<PgResult> exec(const std::string& sql);
  // One statement, binary parameters, binary results.
  Result<PgResult> query(const std::string& sql, const Params& params);
  // Prepares `sql` under `name` once per connection, then runs it: binary parameters and results.
  Result<PgResult> prepared(const std::string& name, const std::string& sql, const Params& params);

  // Sends a prepared statement without waiting (binary parameters and results); receive() then waits for its
  // result. Nothing else may be sent on the connection in between.
  Status send_prepared(const std::string& name, const std::string& sql, const Params& params);
  Result<PgResult> receive(std::string_view context);

  // Prepares `sql` under `name` on this connection unless it was already (statements sent in pipeline mode
  // must be prepared before it starts).
  Status prepare(const std::string& name, const std::string& sql, const Params& params);

  // Pipeline mode: queue several prepared statements and read their results in order, one round trip. Each
  // statement gives one result from pipeline_next(), each sync one more (of status PGRES_PIPELINE_SYNC); a
  // failed statement makes the others up to the next sync fail with kConflict ("not run").
  Status pipeline_begin();
  Status pipeline_send(const std::string& name, const std::string& sql, const Params& params);
  Status pipeline_sync();
  // The next result of the pipeline, in the order sent (kInvalidArgument past the end).
  Result<PgResult> pipeline_next();
  Status pipeline_end();

  // A connection that failed at the socket level is broken for good; the pool replaces it.
  bool broken() const;
  // Whether a statement sent now could reach the server, found without a round trip: false when the connection
  // is broken, or when the server closed its end while the connection sat idle (a restart, a terminated
  // backend). It reads what the server sent meanwhile (PQconsumeInput) and asks the socket whether the
  // server hung up (POLLRDHUP), which a notice sent just before the close would otherwise hide.
  bool alive();
  pg_conn* raw() const { return c_; }
  int server_version() const;
  const std::string& conninfo() const { return conninfo_; }

 private:
  explicit Connection(pg_conn* c, std::string conninfo) : c_(c), conninfo_(std::move(conninfo)) {}
  pg_conn* c_ = nullptr;
  std::string conninfo_;
  std::set<std::string> prepared_;
  size_t pipeline_pending_ = 0;
};

// A fixed-size pool of connections to one server, opened lazily. on_connect runs once on each new
// connection (e.g. SET statements) before it is handed out.
class Pool {
 public:
  Pool(std::string conninfo, size_t size, std::function<Status(Connection&)> on_connect = {});
  ~Pool();

  class Lease {
   public:
    Lease(Pool* p, std::unique_ptr<Connection> c) : pool_(p), c_(std::move(c)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    Connection& operator*() { return *c_; }
    Connection* operator->() { return c_.get(); }

   private:
    Pool* pool_;
    std::unique_ptr<Connection> c_;
  };

  // Waits up to `timeout` for a free connection (kTimeout), connecting a new one if the pool is not full.
  Result<Lease> acquire(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  const std::string& conninfo() const { return conninfo_; }

 private:
  void give_back(std::unique_ptr<Connection> c);
  // Waits up to `timeout` for an idle connection or room for a new one; false on timeout with neither.
  bool wait_for_free(base::UniqueLock& lk, std::chrono::milliseconds timeout) CAIRN_REQUIRES(mu_);
  std::string conninfo_;
  size_t size_;
  std::function<Status(Connection&)> on_connect_;
  base::Mutex mu_;  // guards idle_ and open_; never held while connecting or while a connection is in use
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_ CAIRN_GUARDED_BY(mu_);
  size_t open_ CAIRN_GUARDED_BY(mu_) = 0;
};

// Quotes an identifier or a literal for SQL text (roles and passwords in DDL cannot be parameters).
std::string quote_ident(std::string_view s);
std::string quote_literal(std::string_view s);

}  // namespace cairn::pg
