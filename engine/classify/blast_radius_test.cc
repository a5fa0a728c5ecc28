#include "engine/classify/blast_radius.h"

#include "gtest/gtest.h"

namespace salvo::classify {
namespace {

smtp::Reply R(int code, smtp::Stage stage, bool synthetic = false) {
  smtp::Reply r;
  r.code = code;
  r.stage = stage;
  r.synthetic = synthetic;
  return r;
}

smtp::TransactionResult Txn(int mail, std::vector<int> rcpts, int data,
                            int end) {
  smtp::TransactionResult t;
  t.mail = R(mail, smtp::Stage::kMail);
  for (int c : rcpts) t.rcpts.push_back(R(c, smtp::Stage::kRcpt));
  t.data = R(data, smtp::Stage::kData);
  t.data_end = R(end, smtp::Stage::kDataEnd);
  return t;
}

TEST(BlastRadiusTest, DeliveredOnlyWhenRcptAndFinalDotAccepted) {
  auto t = Txn(250, {250, 550}, 354, 250);
  EXPECT_EQ(ForRecipient(t, 0).action, Action::kDelivered);
  Verdict v = ForRecipient(t, 1);
  EXPECT_EQ(v.action, Action::kBounce);
  EXPECT_EQ(v.scope, Scope::kRecipient);
}

TEST(BlastRadiusTest, RcptTransientDefersThatRecipientOnly) {
  auto t = Txn(250, {451, 250}, 354, 250);
  EXPECT_EQ(ForRecipient(t, 0).action, Action::kDefer);
  EXPECT_EQ(ForRecipient(t, 0).scope, Scope::kRecipient);
  EXPECT_EQ(ForRecipient(t, 1).action, Action::kDelivered);
}

TEST(BlastRadiusTest, MailFailureAffectsTheMessage) {
  auto t = Txn(451, {503, 503}, 503, 0);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(ForRecipient(t, i).action, Action::kDefer);
    EXPECT_EQ(ForRecipient(t, i).scope, Scope::kMessage);
    EXPECT_EQ(ForRecipient(t, i).reply.stage, smtp::Stage::kMail);
  }
  auto p = Txn(550, {503}, 503, 0);
  EXPECT_EQ(ForRecipient(p, 0).action, Action::kBounce);
}

TEST(BlastRadiusTest, PermanentAfterDataBouncesEveryRecipient) {
  auto t = Txn(250, {250, 250, 250}, 354, 554);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(ForRecipient(t, i).action, Action::kBounce);
    EXPECT_EQ(ForRecipient(t, i).scope, Scope::kMessage);
  }
  auto d = Txn(250, {250}, 554, 0);
  EXPECT_EQ(ForRecipient(d, 0).action, Action::kBounce);
}

TEST(BlastRadiusTest, Code421OrDroppedConnectionMovesToNextMx) {
  auto t = Txn(250, {250}, 354, 421);
  EXPECT_EQ(ForRecipient(t, 0).action, Action::kTryNextMx);
  EXPECT_EQ(ForRecipient(t, 0).scope, Scope::kSession);
  auto dropped = Txn(250, {250}, 354, 0);
  dropped.data_end.synthetic = true;
  EXPECT_EQ(ForRecipient(dropped, 0).action, Action::kTryNextMx);
  auto early = Txn(0, {0}, 0, 0);
  EXPECT_EQ(ForRecipient(early, 0).action, Action::kTryNextMx);
  EXPECT_EQ(ForSessionFailure(R(421, smtp::Stage::kGreeting)).action,
            Action::kTryNextMx);
  EXPECT_EQ(ForSessionFailure(R(554, smtp::Stage::kGreeting)).action,
            Action::kBounce);
}

TEST(BlastRadiusTest, MissingRecipientReplyIsNeverDelivered) {
  auto t = Txn(250, {}, 354, 250);
  EXPECT_NE(ForRecipient(t, 0).action, Action::kDelivered);
}

}  // namespace
}  // namespace salvo::classify
