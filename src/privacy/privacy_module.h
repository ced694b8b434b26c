// The privacy module as the store runs it (store/policy.h): an append policy that checks each event's
// declaration of personal parts (metadata.privacy) and seals those parts under their subjects' keys before
// anything is written, and the read side that opens them (or redacts them once forgotten), forgets subjects
// and purges forgotten parts. docs/privacy.md is the contract.
//
// Without a key store it still checks declarations, and refuses any event that declares personal parts;
// has_keys() tells the composition root whether to hand it to the store as its SealedParts.
// Owns its KeyStore; thread-safe as the KeyStore is.
#pragma once

#include <memory>
#include <string>

#include "privacy/keystore.h"
#include "store/policy.h"

namespace cairn::privacy {

class PrivacyModule final : public store::AppendPolicy, public store::SealedParts {
 public:
  // The key store of these options (open_configured; it must be outside data_dir, when one is given), or none.
  static Result<std::shared_ptr<PrivacyModule>> open(const StoreOptions& options, const std::string& data_dir);
  explicit PrivacyModule(std::unique_ptr<KeyStore> keys) : keys_(std::move(keys)) {}

  bool has_keys() const { return keys_ != nullptr; }

  // AppendPolicy
  bool applies(const EventData& event) const override;
  std::unique_ptr<Run> begin(store::PolicyHost& host, const Limits& limits) override;

  // SealedParts (only used with a key store)
  Result<std::string> open_data(const Uuid& id, std::string_view stored_data) const override;
  DataKeys* data_keys() override { return keys_.get(); }
  Result<std::string> subject_id(std::string_view subject) const override;
  Result<ForgetResult> forget(Store& store, std::string_view subject, std::string_view reason,
                              std::string_view actor_json) override;
  Result<store::SegmentPurgeOutcome> purge_segment(const log::Segment& segment, uint64_t size, base::FileSystem* fs,
                                                   const std::string& tmp_path, bool sync,
                                                   const std::function<void(uint64_t)>& progress) const override;
  Result<std::string> purge_parts(std::string_view stored_data, size_t* purged,
                                  std::vector<std::string>* key_ids) const override;
  Result<uint64_t> record_purge(Store& store, std::string data, std::string_view actor_json) override;

 private:
  class SealRun;
  std::unique_ptr<KeyStore> keys_;
};

}  // namespace cairn::privacy
