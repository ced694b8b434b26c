// Keys for derived data kept at rest beside a store (projection checkpoints and snapshots), so that personal
// data a projection copies out of events is never on disk in clear and can be made unreadable everywhere,
// backups included, by destroying one key (docs/privacy.md, "Projection state").
//
// A store configured with a key store hands out its DataKeys (Store::data_keys()); a store without one has
// none, and derived data is then written in clear (there is no personal data to protect).
// Keys are random 32-byte keys named by an id ("dk:" + 32 hex digits), stored wrapped under the master key in
// the key store, never in the data directory. create() and destroy() are durable when they return.
// Thread safety: every method may be called from any thread. Lifetime: owned by the store; valid until it closes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "cairn/status.h"

namespace cairn {

using DataKey = std::array<uint8_t, 32>;

class DataKeys {
 public:
  virtual ~DataKeys() = default;
  // A new random key and its id.
  virtual Result<std::pair<std::string, DataKey>> create_data_key() = 0;
  // The key named id: nullopt once it was destroyed, kNotFound when this key store never held it.
  virtual Result<std::optional<DataKey>> data_key(std::string_view id) const = 0;
  // Destroys the key; every copy of what it encrypted becomes unreadable. A destroyed or unknown id is not an error.
  virtual Status destroy_data_key(std::string_view id) = 0;
};

// Whether s has the form of a data key id: "dk:" and 32 lowercase hex digits.
bool is_data_key_id(std::string_view s);

}  // namespace cairn
