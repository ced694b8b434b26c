#include "privacy/privacy_module.h"

#include <fmt/format.h>

#include "log/record.h"
#include "privacy/forget.h"
#include "privacy/personal.h"
#include "privacy/purge.h"

namespace cairn::privacy {

class PrivacyModule::SealRun final : public store::AppendPolicy::Run {
 public:
  SealRun(KeyStore* keys, const Limits& limits) : keys_(keys), limits_(limits) {}

  Status check(const std::vector<StreamAppend>& requests, size_t i, size_t j, const std::string& what) override {
    const EventData& ev = requests[i].events[j];
    // Personal parts (docs/privacy.md): declared in metadata.privacy, sealed once the event has its id.
    auto declared = read_declaration(ev.metadata, ev.data, ev.content_type, what);
    if (!declared.ok()) return declared.status();
    if (*declared && !keys_)
      return Status::invalid_argument(fmt::format(
          "{}.metadata.privacy: personal parts need a key store; start cairnd with --key-store DIR and CAIRN_MASTER_KEY "
          "(docs/privacy.md)", what));
    has_personal_ = has_personal_ || declared->has_value();
    declarations_.push_back(std::move(*declared));
    return {};
  }

  Status transform(EventData& e, const std::string& what, store::Transformed* out) override {
    const auto& declared = declarations_[transformed_++];
    if (!declared) return {};
    auto sealed = seal_event(*keys_, *e.id, e.data, e.metadata, *declared);
    if (!sealed.ok()) return sealed.status();
    e.data = std::move(sealed->data);
    e.metadata = std::move(sealed->metadata);
    if (e.type.size() + e.metadata.size() + e.data.size() > limits_.max_event_bytes)
      return Status::limit_exceeded(fmt::format("{}: with its personal parts sealed the event is {} bytes, the limit is {}",
                                                what, e.type.size() + e.metadata.size() + e.data.size(),
                                                limits_.max_event_bytes));
    out->flags = log::kEventFlagSealedParts;
    // The digest covers the redactable form (format.md), which sealing produced in the same pass.
    out->digest_data = std::move(sealed->redactable);
    return {};
  }

  Status after_transform(uint64_t bytes, uint64_t grown) override {
    if (has_personal_ && bytes + grown > limits_.max_append_bytes)
      return Status::limit_exceeded(fmt::format("with its personal parts sealed the append is {} bytes, the limit is {}",
                                                bytes + grown, limits_.max_append_bytes));
    return {};
  }

 private:
  KeyStore* keys_;
  const Limits limits_;  // a copy: the run outlives nothing, but needs no one else's lifetime
  std::vector<std::optional<Declaration>> declarations_;  // per checked event, in request order
  size_t transformed_ = 0;
  bool has_personal_ = false;
};

Result<std::shared_ptr<PrivacyModule>> PrivacyModule::open(const StoreOptions& options, const std::string& data_dir) {
  auto keys = open_configured(options.key_store_dir, options.master_key, data_dir);
  if (!keys.ok()) return keys.status();
  return std::make_shared<PrivacyModule>(std::move(*keys));
}

bool PrivacyModule::applies(const EventData& event) const {
  // read_declaration's own first test: metadata without the key declares nothing.
  return event.metadata.find("\"privacy\"") != std::string::npos;
}

std::unique_ptr<store::AppendPolicy::Run> PrivacyModule::begin(store::PolicyHost&, const Limits& limits) {
  return std::make_unique<SealRun>(keys_.get(), limits);
}

Result<std::string> PrivacyModule::open_data(const Uuid& id, std::string_view stored_data) const {
  bool redacted = false;
  return privacy::open_data(*keys_, id, stored_data, &redacted);
}

Result<std::string> PrivacyModule::subject_id(std::string_view subject) const {
  if (subject.empty() || subject.size() > 256) return Status::invalid_argument("subject: required, 1 to 256 bytes");
  return keys_->subject_id(subject);
}

Result<ForgetResult> PrivacyModule::forget(Store& store, std::string_view subject, std::string_view reason,
                                           std::string_view actor_json) {
  return forget_subject(store, *keys_, subject, reason, actor_json);
}

Result<store::SegmentPurgeOutcome> PrivacyModule::purge_segment(const log::Segment& segment, uint64_t size,
                                                                base::FileSystem* fs, const std::string& tmp_path,
                                                                bool sync,
                                                                const std::function<void(uint64_t)>& progress) const {
  auto p = privacy::purge_segment(segment, size, *keys_, fs, tmp_path, sync, progress);
  if (!p.ok()) return p.status();
  return store::SegmentPurgeOutcome{p->rewritten, p->events, p->parts, p->bytes_replaced, std::move(p->subjects)};
}

Result<std::string> PrivacyModule::purge_parts(std::string_view stored_data, size_t* purged,
                                               std::vector<std::string>* key_ids) const {
  return privacy::purge_parts(*keys_, stored_data, purged, key_ids);
}

Result<uint64_t> PrivacyModule::record_purge(Store& store, std::string data, std::string_view actor_json) {
  return record_privacy_event(store, kPurgedType, std::move(data), actor_json);
}

}  // namespace cairn::privacy
