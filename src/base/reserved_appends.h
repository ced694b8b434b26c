// The reserved-append path: appends to Cairn's own '$' streams ($projections, $privacy), with the same checks
// and durability as Store::append (returned ok: durable per the store's durability). It is not in the public
// Store API because clients must never write there; both backends implement it beside Store, and the modules
// that keep records of their own (projections, privacy) reach it through reserved_appends(). Thread safety and
// lifetime: those of the Store it belongs to.
#pragma once

#include <string>

#include "cairn/status.h"
#include "cairn/store.h"

namespace cairn::base {

class ReservedAppends {
 public:
  // request.stream must start with '$'; event types may be reserved too.
  virtual Result<AppendResult> append_reserved(StreamAppend request) = 0;

 protected:
  ~ReservedAppends() = default;  // not owned through this interface
};

// The store's reserved-append path; kInvalidArgument for a Store that has none (one implemented outside Cairn).
inline Result<ReservedAppends*> reserved_appends(Store& store) {
  if (auto* r = dynamic_cast<ReservedAppends*>(&store)) return r;
  return Status::invalid_argument("this store has no reserved-append path: Cairn's own records need a Cairn backend");
}

}  // namespace cairn::base
