// SuppressionStore against a real QueueStore (RocksDB in $TEST_TMPDIR):
// address vs domain matching, case rules, tenants kept apart, list paging,
// remove, persistence across reopen, and CheckMany against IsSuppressed.
#include "storage/suppression_store.h"

#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace salvo::storage {
namespace {

class SuppressionStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    path_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/suppression_", ++n);
    Open();
  }
  void Open() {
    sup_.reset();
    queue_.reset();
    QueueStore::Options o;
    o.path = path_;
    o.num_shards = 4;
    auto q = QueueStore::Open(o);
    ASSERT_TRUE(q.ok()) << q.status();
    queue_ = std::move(*q);
    sup_ = std::make_unique<SuppressionStore>(queue_.get());
  }
  int Add(const std::string& tenant, std::vector<std::string> entries,
          SuppressionReason reason = SuppressionReason::kApi,
          int64_t now = 1000) {
    auto n = sup_->AddNow(tenant, entries, reason, now);
    EXPECT_TRUE(n.ok()) << n.status();
    return n.value_or(-1);
  }
  // The matched entry, or "" when not suppressed.
  std::string Match(const std::string& tenant, const std::string& address) {
    SuppressionEntry m;
    auto hit = sup_->IsSuppressed(tenant, address, &m);
    EXPECT_TRUE(hit.ok()) << hit.status();
    return hit.value_or(false) ? m.entry : "";
  }

  std::string path_;
  std::unique_ptr<QueueStore> queue_;
  std::unique_ptr<SuppressionStore> sup_;
};

TEST(SuppressionEntryTest, Normalize) {
  EXPECT_EQ(*NormalizeSuppressionEntry("Bob@Example.COM"), "Bob@example.com");
  EXPECT_EQ(*NormalizeSuppressionEntry("@Spam.Example"), "@spam.example");
  EXPECT_EQ(*NormalizeSuppressionEntry("Spam.Example"), "@spam.example");
  EXPECT_FALSE(NormalizeSuppressionEntry("").ok());
  EXPECT_FALSE(NormalizeSuppressionEntry("a@").ok());
  EXPECT_FALSE(NormalizeSuppressionEntry("a b@c.d").ok());
  EXPECT_FALSE(NormalizeSuppressionEntry("a\n@c.d").ok());
  EXPECT_FALSE(NormalizeSuppressionEntry("caf\xc3\xa9@c.d").ok());
  EXPECT_FALSE(NormalizeSuppressionEntry(std::string(321, 'a')).ok());
}

TEST_F(SuppressionStoreTest, AddressThenDomainCaseInsensitive) {
  // Negative control: nothing is suppressed before anything is added.
  EXPECT_EQ(Match("t1", "bob@example.com"), "");
  EXPECT_EQ(Add("t1", {"Bob@Example.com", "@spam.example"}), 2);
  EXPECT_EQ(Match("t1", "bob@example.com"), "Bob@example.com");
  EXPECT_EQ(Match("t1", "BOB@EXAMPLE.COM"), "Bob@example.com");
  EXPECT_EQ(Match("t1", "alice@example.com"), "");
  EXPECT_EQ(Match("t1", "anyone@Spam.Example"), "@spam.example");
  EXPECT_EQ(Match("t1", "x@sub.spam.example"), "");  // exact domain only
  // Address wins over domain when both match.
  EXPECT_EQ(Add("t1", {"bob@spam.example"}), 1);
  EXPECT_EQ(Match("t1", "Bob@spam.example"), "bob@spam.example");
}

TEST_F(SuppressionStoreTest, TenantsAreSeparate) {
  EXPECT_EQ(Add("t1", {"a@x.example"}), 1);
  EXPECT_EQ(Match("t2", "a@x.example"), "");
  // A tenant whose name is a prefix of another's cannot see its entries.
  EXPECT_EQ(Add("t", {"@x.example"}), 1);
  EXPECT_EQ(Match("t1", "b@x.example"), "");
  EXPECT_EQ(Match("t", "b@x.example"), "@x.example");
}

TEST_F(SuppressionStoreTest, AddCountsOnlyNewEntriesAndUpdatesReason) {
  EXPECT_EQ(Add("t1", {"a@x.example", "A@X.example", "b@x.example"}), 2);
  EXPECT_EQ(Add("t1", {"a@x.example", "c@x.example"},
                SuppressionReason::kBounce, 2000),
            1);
  SuppressionEntry m;
  ASSERT_TRUE(*sup_->IsSuppressed("t1", "a@x.example", &m));
  EXPECT_EQ(m.reason, SuppressionReason::kBounce);
  EXPECT_EQ(m.created_ms, 2000);
  EXPECT_FALSE(sup_->AddNow("t1", {"ok@x.example", "bad entry"},
                            SuppressionReason::kApi, 1)
                   .ok());
  EXPECT_EQ(Match("t1", "ok@x.example"), "");  // all or nothing
  EXPECT_FALSE(sup_->AddNow("", {"a@b.example"}, SuppressionReason::kApi, 1).ok());
}

TEST_F(SuppressionStoreTest, Remove) {
  Add("t1", {"a@x.example", "@y.example"});
  EXPECT_TRUE(sup_->RemoveNow("t1", "A@X.EXAMPLE").ok());
  EXPECT_EQ(Match("t1", "a@x.example"), "");
  EXPECT_EQ(sup_->RemoveNow("t1", "a@x.example").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(sup_->RemoveNow("t2", "y.example").code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(sup_->RemoveNow("t1", "y.example").ok());
  EXPECT_EQ(Match("t1", "z@y.example"), "");
}

TEST_F(SuppressionStoreTest, ListPagesThroughEverything) {
  std::vector<std::string> entries;
  for (int i = 0; i < 25; ++i) entries.push_back(absl::StrCat("u", i, "@x.example"));
  entries.push_back("@z.example");
  Add("t1", entries, SuppressionReason::kComplaint, 5000);
  Add("t2", {"other@x.example"});
  std::set<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto page = sup_->List("t1", cursor, 7);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->entries.size(), 7u);
    for (const SuppressionEntry& e : page->entries) {
      EXPECT_TRUE(seen.insert(e.entry).second) << "repeated " << e.entry;
      EXPECT_EQ(e.reason, SuppressionReason::kComplaint);
      EXPECT_EQ(e.created_ms, 5000);
    }
    cursor = page->next_cursor;
    ASSERT_LT(++pages, 10);
  } while (!cursor.empty());
  EXPECT_EQ(pages, 4);
  EXPECT_EQ(seen.size(), 26u);
  EXPECT_EQ(seen.count("other@x.example"), 0u);
  EXPECT_FALSE(sup_->List("t1", "zz", 7).ok());
  EXPECT_FALSE(sup_->List("t1", "", 0).ok());
  auto empty = sup_->List("nobody", "", 10);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->entries.empty());
  EXPECT_TRUE(empty->next_cursor.empty());
}

TEST_F(SuppressionStoreTest, PersistsAcrossReopen) {
  Add("t1", {"a@x.example", "@y.example"}, SuppressionReason::kUnsubscribe);
  Open();
  EXPECT_EQ(Match("t1", "a@x.example"), "a@x.example");
  EXPECT_EQ(Match("t1", "q@y.example"), "@y.example");
  SuppressionEntry m;
  ASSERT_TRUE(*sup_->IsSuppressed("t1", "a@x.example", &m));
  EXPECT_EQ(m.reason, SuppressionReason::kUnsubscribe);
}

TEST_F(SuppressionStoreTest, CheckManyAgreesWithIsSuppressed) {
  std::mt19937 rng(7);
  std::vector<std::string> entries, addresses;
  for (int i = 0; i < 40; ++i) {
    entries.push_back(i % 5 == 0 ? absl::StrCat("@d", i, ".example")
                                 : absl::StrCat("u", i, "@d", i % 9, ".example"));
  }
  for (int i = 0; i < 500; ++i) {
    addresses.push_back(absl::StrCat(rng() % 2 ? "U" : "u", rng() % 60, "@D",
                                     rng() % 45, ".example"));
  }
  std::vector<absl::string_view> views(addresses.begin(), addresses.end());
  std::vector<std::pair<size_t, std::string>> hits;
  ASSERT_TRUE(sup_->CheckMany("t1", views, &hits).ok());
  EXPECT_TRUE(hits.empty());  // empty list: the one-seek path
  Add("t1", entries);
  ASSERT_TRUE(sup_->CheckMany("t1", views, &hits).ok());
  size_t h = 0;
  for (size_t i = 0; i < addresses.size(); ++i) {
    const std::string want = Match("t1", addresses[i]);
    if (want.empty()) continue;
    ASSERT_LT(h, hits.size());
    EXPECT_EQ(hits[h].first, i);
    EXPECT_EQ(hits[h].second, want);
    ++h;
  }
  EXPECT_EQ(h, hits.size());
  EXPECT_GT(h, 10u);  // the test data does hit both kinds
}

}  // namespace
}  // namespace salvo::storage
