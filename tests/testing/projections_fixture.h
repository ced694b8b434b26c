// The setup the projection and AI-ledger tests share: an embedded store (durability none) and a projection
// runtime over it, in a fresh directory. open_store_now() opens the store, open_projections_now() the runtime
// with po_ (its dir defaulting to DIR/projections), reopen_projections() closes the runtime and opens it again
// over the same store (resuming from its checkpoints); TearDown closes both. A GoogleTest fixture: one test
// thread at a time; the runtime borrows the store, so it is always closed first.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "testing/temp_dir.h"

namespace cairn::testing {

class ProjectionsFixture : public ::testing::Test {
 protected:
  void open_store_now() {
    EmbeddedOptions o;
    o.dir = dir_.sub("store");
    o.durability = Durability::kNone;
    auto s = open_store(o);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    store_ = std::move(*s);
  }

  void open_projections_now() {
    if (po_.dir.empty()) po_.dir = dir_.sub("projections");
    auto p = open_projections(*store_, po_);
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    p_ = std::move(*p);
  }

  void reopen_projections() {
    if (p_) {
      ASSERT_TRUE(p_->close().ok());
    }
    p_.reset();
    open_projections_now();
  }

  // Closes the runtime, then the store; with expect_ok, a failed close fails the test.
  void close_all(bool expect_ok) {
    if (p_) {
      Status st = p_->close();
      if (expect_ok) EXPECT_TRUE(st.ok()) << st.to_string();
    }
    p_.reset();
    if (store_) {
      Status st = store_->close();
      if (expect_ok) EXPECT_TRUE(st.ok()) << st.to_string();
    }
  }

  void TearDown() override { close_all(false); }

  // Appends events to one stream; the last one's position (0 after a failure, which fails the test).
  uint64_t append_to(const std::string& stream, std::vector<EventData> events) {
    StreamAppend a;
    a.stream = stream;
    a.events = std::move(events);
    auto r = store_->append(std::move(a));
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? r->streams[0].last_position : 0;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  ProjectionsOptions po_;
  std::unique_ptr<Projections> p_;
};

}  // namespace cairn::testing
