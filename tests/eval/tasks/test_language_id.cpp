// identify_language: the stand-in for langdetect behind IFEval's
// language:response_language, on one sentence in each language IFEval asks
// for (instructions_util.LANGUAGE_CODES), against langdetect itself, and the
// cases where the rule decides.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/tasks/language_id.h"
#include "tests/support/test_support.h"

using tess::eval::tasks::identify_language;

namespace {

const std::vector<std::pair<std::string, std::string>>& sentences() {
  static const std::vector<std::pair<std::string, std::string>> s = {
      {"en", "The weather is nice today and we are going to the park with the children."},
      {"es", "El tiempo es muy bueno hoy y vamos al parque con los niños."},
      {"pt", "O tempo está muito bom hoje e nós vamos ao parque com as crianças."},
      {"fr", "Le temps est très beau aujourd'hui et nous allons au parc avec les enfants."},
      {"de", "Das Wetter ist heute schön und wir gehen mit den Kindern in den Park."},
      {"it", "Il tempo è molto bello oggi e andiamo al parco con i bambini."},
      {"pl", "Pogoda jest dzisiaj bardzo ładna i idziemy z dziećmi do parku."},
      {"vi", "Hôm nay thời tiết rất đẹp và chúng tôi đi công viên với các con."},
      {"sw", "Hali ya hewa ni nzuri leo na tunakwenda kwenye bustani pamoja na watoto."},
      {"fi", "Sää on tänään kaunis ja menemme puistoon lasten kanssa."},
      {"ru", "Сегодня хорошая погода, и мы идём в парк с детьми."},
      {"uk", "Сьогодні гарна погода, і ми йдемо в парк з дітьми."},
      {"bg", "Днес времето е хубаво и ние ще отидем в парка с децата."},
      {"ar", "الطقس جميل اليوم ونحن ذاهبون إلى الحديقة مع الأطفال."},
      {"fa", "امروز هوا خیلی خوب است و ما با بچه‌ها به پارک می‌رویم."},
      {"ur", "آج موسم بہت اچھا ہے اور ہم بچوں کے ساتھ پارک جا رہے ہیں۔"},
      {"hi", "आज मौसम बहुत अच्छा है और हम बच्चों के साथ पार्क जा रहे हैं।"},
      {"mr", "आज हवामान खूप छान आहे आणि आम्ही मुलांसोबत बागेत जात आहोत."},
      {"ne", "आज मौसम धेरै राम्रो छ र हामी केटाकेटीसँग पार्क जाँदैछौं।"},
      {"bn", "আজ আবহাওয়া খুব ভালো এবং আমরা বাচ্চাদের সাথে পার্কে যাচ্ছি।"},
      {"pa", "ਅੱਜ ਮੌਸਮ ਬਹੁਤ ਵਧੀਆ ਹੈ ਅਤੇ ਅਸੀਂ ਬੱਚਿਆਂ ਨਾਲ ਪਾਰਕ ਜਾ ਰਹੇ ਹਾਂ।"},
      {"gu", "આજે હવામાન ખૂબ સરસ છે અને અમે બાળકો સાથે બગીચામાં જઈએ છીએ."},
      {"ta", "இன்று வானிலை மிகவும் நன்றாக உள்ளது, நாங்கள் குழந்தைகளுடன் பூங்காவிற்கு செல்கிறோம்."},
      {"te", "ఈ రోజు వాతావరణం చాలా బాగుంది మరియు మేము పిల్లలతో పార్కుకు వెళ్తున్నాము."},
      {"kn", "ಇಂದು ಹವಾಮಾನ ತುಂಬಾ ಚೆನ್ನಾಗಿದೆ ಮತ್ತು ನಾವು ಮಕ್ಕಳೊಂದಿಗೆ ಉದ್ಯಾನಕ್ಕೆ ಹೋಗುತ್ತಿದ್ದೇವೆ."},
      {"ml", "ഇന്ന് കാലാവസ്ഥ വളരെ നല്ലതാണ്, ഞങ്ങൾ കുട്ടികളോടൊപ്പം പാർക്കിലേക്ക് പോകുന്നു."},
      {"th", "วันนี้อากาศดีมากและเราจะไปสวนสาธารณะกับเด็กๆ"},
      {"ko", "오늘 날씨가 아주 좋아서 우리는 아이들과 함께 공원에 갑니다."},
      {"ja", "今日は天気がとても良いので、子供たちと公園に行きます。"},
      {"he", "מזג האוויר היום יפה מאוד ואנחנו הולכים לפארק עם הילדים."},
      // Beyond IFEval's list, so that they are not mistaken for one of it.
      {"zh-cn", "今天天气很好，我们和孩子们一起去公园。"},
      {"el", "Ο καιρός είναι πολύ ωραίος σήμερα και πηγαίνουμε στο πάρκο με τα παιδιά."},
  };
  return s;
}

}  // namespace

TEST_CASE("identify_language names each of IFEval's 30 languages from one sentence", "[unit][eval]") {
  for (const auto& [code, text] : sentences()) {
    INFO(code << ": " << text);
    CHECK(identify_language(text) == code);
  }
}

TEST_CASE("identify_language agrees with langdetect on the sentences and the no-letter case", "[integration][eval]") {
  nlohmann::json texts = nlohmann::json::array();
  for (const auto& [code, text] : sentences()) texts.push_back(text);
  texts.push_back("42, 7 -- ?! 123");
  tess::test::TempDir dir;
  auto file = dir.write("texts.json", texts.dump());
  auto r = tess::test::run_command(tess::test::shell_quote(TESS_PYTHON) + " " +
                                   tess::test::shell_quote(std::string(TESS_SOURCE_DIR) +
                                                           "/tests/tools/langdetect_reference.py") +
                                   " " + tess::test::shell_quote(file.string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto reference = nlohmann::json::parse(r.out);
  REQUIRE(reference.size() == texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    INFO(texts[i].get<std::string>());
    CHECK(identify_language(texts[i].get<std::string>()) == reference[i].get<std::string>());
  }
}

TEST_CASE("identify_language: case, punctuation-only text, ties and a quoted foreign word", "[unit][eval]") {
  CHECK(identify_language("THE WEATHER IS NICE AND THE PARK IS OPEN") == "en");
  CHECK(identify_language("DAS WETTER IST SCHÖN UND DER PARK IST OFFEN") == "de");
  // No letters: langdetect raises; the checkers treat that as followed.
  CHECK(identify_language("").empty());
  CHECK(identify_language("42, 7 -- ?! 123").empty());
  // No function word and no telling letter: the script's most common language.
  CHECK(identify_language("Hello world") == "en");
  CHECK(identify_language("Привет") == "ru");
  // The script with the most letters decides: one Cyrillic word in English text.
  CHECK(identify_language("The Russian word for peace is мир, and it is short.") == "en");
  // The danda ends a word: "आहे।" is Marathi's "आहे" (else a tie: Hindi).
  CHECK(identify_language("खूप छान आहे।") == "mr");
}
