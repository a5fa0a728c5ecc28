// Child process of queue_durability_test. Usage: queue_durability_child DB
// Opens the store at DB, then 4 threads commit durable 3-recipient batches
// and, after each acknowledgement, write the batch's ids (16 hex digits, one
// per line) to stdout in one write(). Runs until killed (or 120 s at most).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/queue_store.h"

using salvo::storage::Lane;
using salvo::storage::QueueKey;
using salvo::storage::QueueStore;
using salvo::storage::Recipient;
using salvo::storage::StateBatch;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DB\n", argv[0]);
    return 2;
  }
  QueueStore::Options o;
  o.path = argv[1];
  o.num_shards = 8;
  auto opened = QueueStore::Open(o);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<QueueStore> store = std::move(*opened);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::mutex out_mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      while (std::chrono::steady_clock::now() < deadline) {
        StateBatch batch;
        std::string line;
        for (int i = 0; i < 3; ++i) {
          const uint64_t id = store->NextId();
          Recipient rec;
          rec.set_content_id(1);
          rec.set_address("r" + std::to_string(id) + "@example.com");
          batch.Enqueue({static_cast<uint16_t>(id % 8), Lane::kBulk,
                         static_cast<int64_t>(id >> 20), id},
                        rec);
          line += salvo::storage::IdToHex(id) + "\n";
        }
        if (!store->CommitNow(std::move(batch), /*durable=*/true).ok()) {
          _exit(3);
        }
        std::lock_guard<std::mutex> lock(out_mu);
        if (write(1, line.data(), line.size()) !=
            static_cast<ssize_t>(line.size())) {
          _exit(4);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return 0;
}
