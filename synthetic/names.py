"""Name tables for the synthetic county: surnames, given names, minority names.

Everything here is a frequency table or a list of characters, never a person.
Shares are approximate national figures (王 李 张 each about 7 %, the top 100
surnames about 85 %), which is enough for what the generator needs: Chinese
full names are low-entropy, so 张伟, 王芳, 李娜 repeat often, and a linker
that leans on the name alone must fail the way it fails on real data.

Also here, because the error model needs them next to the names they distort:
homophone groups (the commonest typing error in Chinese administrative data,
all members simplified characters) and a small simplified→traditional table.

Public surface:

* :func:`draw_names` -- vectorised surname + given name for arrays of people.
* :data:`HOMOPHONE_GROUPS`, :data:`HOMOPHONE_OF` -- char → its homophones.
* :data:`TRADITIONAL_OF` -- simplified char → traditional char.
* :data:`MIDDLE_DOT` and :data:`DOT_VARIANTS` -- the dot in minority names.
"""

from __future__ import annotations

import numpy as np

# --- surnames --------------------------------------------------------------

#: The top ~100 surnames with approximate national shares (per cent).
TOP_SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.12), ("李", 7.00), ("张", 6.74), ("刘", 5.10), ("陈", 4.61), ("杨", 3.22),
    ("黄", 2.45), ("赵", 2.29), ("吴", 2.05), ("周", 1.99), ("徐", 1.66), ("孙", 1.54),
    ("马", 1.46), ("朱", 1.43), ("胡", 1.33), ("郭", 1.24), ("何", 1.18), ("林", 1.13),
    ("高", 1.12), ("罗", 1.11), ("郑", 0.97), ("梁", 0.96), ("谢", 0.85), ("宋", 0.80),
    ("唐", 0.79), ("许", 0.77), ("韩", 0.72), ("冯", 0.71), ("邓", 0.71), ("曹", 0.70),
    ("彭", 0.66), ("曾", 0.64), ("肖", 0.64), ("田", 0.62), ("董", 0.57), ("袁", 0.55),
    ("潘", 0.55), ("于", 0.55), ("蒋", 0.54), ("蔡", 0.54), ("余", 0.53), ("杜", 0.52),
    ("叶", 0.51), ("程", 0.50), ("苏", 0.48), ("魏", 0.47), ("吕", 0.46), ("丁", 0.45),
    ("任", 0.44), ("沈", 0.44), ("姚", 0.42), ("卢", 0.42), ("姜", 0.40), ("崔", 0.39),
    ("钟", 0.38), ("谭", 0.38), ("陆", 0.37), ("汪", 0.36), ("范", 0.36), ("金", 0.35),
    ("石", 0.34), ("廖", 0.34), ("贾", 0.33), ("夏", 0.32), ("韦", 0.32), ("付", 0.31),
    ("方", 0.30), ("白", 0.30), ("邹", 0.30), ("孟", 0.29), ("熊", 0.29), ("秦", 0.28),
    ("邱", 0.28), ("江", 0.27), ("尹", 0.27), ("薛", 0.26), ("闫", 0.25), ("段", 0.25),
    ("雷", 0.25), ("侯", 0.24), ("龙", 0.24), ("史", 0.24), ("陶", 0.23), ("黎", 0.23),
    ("贺", 0.22), ("顾", 0.22), ("毛", 0.22), ("郝", 0.21), ("龚", 0.21), ("邵", 0.21),
    ("万", 0.20), ("钱", 0.20), ("严", 0.19), ("覃", 0.19), ("武", 0.19), ("戴", 0.19),
    ("莫", 0.18), ("孔", 0.18), ("向", 0.17), ("汤", 0.17),
)

#: The long tail: single-character surnames outside the top 100, in rough
#: order of frequency; they share :data:`TAIL_SHARE` per cent with Zipf weights.
TAIL_SURNAMES = (
    "常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童"
    "凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简"
    "车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑"
    "郎甄丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位"
    "厉伊仝区郜海阚花权强帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦"
    "戈伏鹿薄邸雍辜羊母裘亓修邰赫杭况那宿鲜印逯隆茹战慕危银亢嵇公宾戎勾茅利呼居揭干但尉冶斯元束檀"
)
TAIL_SHARE = 13.0

#: Two-character surnames and their (small) shares, per cent.
COMPOUND_SURNAMES: tuple[tuple[str, float], ...] = (
    ("欧阳", 0.040), ("司马", 0.012), ("诸葛", 0.008), ("上官", 0.008), ("皇甫", 0.006),
    ("东方", 0.005), ("夏侯", 0.004), ("令狐", 0.004), ("慕容", 0.003), ("尉迟", 0.003),
    ("公孙", 0.003), ("长孙", 0.002), ("宇文", 0.002), ("司徒", 0.004), ("端木", 0.002),
    ("西门", 0.002),
)


def _surname_table() -> tuple[np.ndarray, np.ndarray]:
    names: dict[str, float] = {}
    for s, w in TOP_SURNAMES:
        names[s] = names.get(s, 0.0) + w
    tail = [c for c in dict.fromkeys(TAIL_SURNAMES) if c not in names]
    z = 1.0 / np.arange(1, len(tail) + 1) ** 0.8
    for s, w in zip(tail, z / z.sum() * TAIL_SHARE, strict=True):
        names[s] = float(w)
    for s, w in COMPOUND_SURNAMES:
        names[s] = w
    arr = np.array(list(names), dtype="U2")
    p = np.array(list(names.values()), dtype=float)
    return arr, p / p.sum()


SURNAMES, SURNAME_P = _surname_table()

# --- given names -----------------------------------------------------------
# Whole given names that are popular, by sex and by era (born before 1980 or
# from 1980).  Drawn with Zipf weights from the order written here.

POPULAR_GIVEN = {
    ("M", "old"): (
        "伟 军 勇 强 明 刚 平 华 建华 建国 建军 志强 国强 文 斌 辉 林 海 峰 东 波 兵 "
        "成 红军 卫东 国庆 德明 志明 永强 建平 文华 振华 学军 金山 长江 海涛 建 国华 "
        "庆 春 德华 伟东 光明 新民 福 贵 发 荣 义 忠 进 才 仁 刚强 学文 正华 洪 亮"
    ),
    ("M", "new"): (
        "伟 磊 涛 杰 超 鹏 浩 宇 鑫 俊 帅 凯 洋 飞 旭 阳 龙 亮 斌 健 昊 博 晨 鹏飞 "
        "浩然 子轩 宇轩 俊杰 浩宇 一鸣 博文 天宇 子豪 皓轩 宇航 志远 文博 明轩 家豪 "
        "俊熙 思远 嘉豪 宏伟 晓东 晓明 建伟 海洋 文杰 志鹏 梓豪 子墨 宇泽 浩轩 睿"
    ),
    ("F", "old"): (
        "芳 秀英 桂英 秀兰 玉兰 桂兰 秀珍 凤英 玉珍 玉英 兰英 秀荣 淑珍 春梅 冬梅 "
        "红梅 丽华 美华 素芬 敏 静 丽 艳 霞 红 英 华 萍 平 兰 梅 凤 珍 琴 云 芬 玉梅 "
        "秀芳 金凤 桂芳 淑英 秀云 桂珍 桂香 翠英 凤兰 秀梅 小红 建华 丽萍 艳红 玉华"
    ),
    ("F", "new"): (
        "芳 娜 敏 静 丽 艳 娟 燕 玲 丹 婷 雪 琳 慧 颖 洁 倩 莉 晶 欣 怡 佳 悦 "
        "婷婷 丽娟 欣怡 梓涵 诗涵 雨涵 子涵 一诺 可馨 佳怡 思涵 梦瑶 雨欣 紫涵 晓燕 "
        "小丽 丽丽 晓丽 海燕 雪梅 金花 丹丹 露 蕾 璐 琪 萌 梦 瑶 雅 文静 亚楠 欣然"
    ),
}

#: Characters for composing less common given names, by sex, in rough
#: frequency order (the first are the commonest).
GIVEN_CHARS = {
    "M": (
        "国明华建文平志伟东海强晓生光林小永新德军金春成正立庆宏兴宝昌安学中世"
        "长俊荣家福清玉祥忠振利勇义瑞杰涛斌鹏飞辉刚超浩宇鑫洋磊凯旭阳龙亮健博"
        "晨峰波红云贵发进才仁孝智勤仲思远泽睿轩豪航铭哲翔彬锋坤鸿坚锦琦炳贤"
    ),
    "F": (
        "丽秀英华玉芳美春红桂兰小金晓艳梅凤燕霞珍云萍敏静琳婷娟玲丹雪慧颖洁"
        "倩莉晶欣怡佳悦琴月娥芬翠菊莲香淑惠荣彩爱秋冬青梦瑶雅雨涵诗思嘉璐露"
        "蕾萌琪薇茜妍婉婧媛娇妮娜楠蓉芝兰蕊"
    ),
}

#: Share of people whose given name comes from :data:`POPULAR_GIVEN`.
P_POPULAR = 0.22
#: Share of composed given names that are one character long.
P_SINGLE_CHAR = 0.12

# --- minority names (Uyghur-style transliterations) ------------------------
# The form is ``given·father's given``.  These are common transliterated
# name elements, not anybody's name.

MINORITY_GIVEN = {
    "M": (
        "艾力 买买提 阿不都 吐尔逊 艾山 阿卜杜拉 依明 玉素甫 努尔 买合木提 热合曼 阿里木 "
        "亚森 吾斯曼 艾合买提 卡德尔 如则 托乎提 司马义 阿布来提 肉孜 伊力哈木 麦麦提 艾尔肯"
    ).split(),
    "F": (
        "阿依古丽 古丽 热娜 帕提古丽 迪丽娜尔 努尔古丽 阿孜古丽 米娜瓦尔 再努尔 古丽娜尔 "
        "阿依努尔 祖丽菲亚 热依拉 佐日古丽 海尼古丽 布合力其 阿米娜 玛依拉 孜拉 排孜拉"
    ).split(),
}

MIDDLE_DOT = "·"  # U+00B7, the form GB 18030 / the public-security standard uses
#: What agencies type instead of U+00B7 (the error model draws from these).
DOT_VARIANTS = ("•", "．", ".", "・", "", "-")

# --- homophones and traditional characters ---------------------------------

#: Groups of simplified characters with the same toneless pinyin that are
#: mistyped for one another in names (IME picks the wrong candidate).
HOMOPHONE_GROUPS: tuple[str, ...] = (
    "伟玮炜", "娜纳", "丽莉俐", "军君钧", "明鸣铭", "华桦骅", "敏闽", "芳方", "杰洁婕",
    "强蔷", "磊垒", "洋阳扬", "勇永涌", "艳燕彦", "平萍苹", "霞侠", "建健剑", "玲伶铃",
    "红虹宏鸿", "静婧靖", "婷亭", "涛滔", "辉晖徽", "鹏朋", "斌彬", "峰锋丰", "娟鹃",
    "刚钢", "波博", "英莹鹰", "秀绣", "兰岚", "梅玫", "宇雨语羽", "浩昊皓", "鑫欣馨",
    "琳林霖", "晶菁", "荣蓉容", "文雯", "龙隆", "飞菲", "成诚承", "东冬", "云芸", "志智",
    "珍真", "贵桂", "玉钰", "慧惠", "佳嘉", "俊骏", "倩茜", "琴勤芹", "凤奉", "梦孟",
    "瑶遥", "涵寒", "轩宣", "博柏", "亮靓", "凯铠", "超朝", "帅率", "晨辰", "睿瑞",
    # surnames (rarer in practice, but they happen)
    "张章", "刘柳", "杨阳", "吴伍武", "徐许", "肖萧", "付傅", "钟仲", "韩寒", "冯丰",
    "程成", "江姜蒋", "李黎", "王汪", "何贺", "沈申", "石史时",
)


def _homophone_index() -> dict[str, str]:
    out: dict[str, str] = {}
    for g in HOMOPHONE_GROUPS:
        for c in g:
            others = "".join(x for x in g if x != c)
            out[c] = out.get(c, "") + "".join(x for x in others if x not in out.get(c, ""))
    return out


#: char → the characters it is mistyped as.
HOMOPHONE_OF: dict[str, str] = _homophone_index()

#: Simplified → traditional for characters common in names (a small table:
#: enough to plant the error, not a converter).
TRADITIONAL_OF: dict[str, str] = dict(zip(
    "伟华丽军红国兰凤龙东刚强杰洁辉鹏涛艳静云庆宝贵荣兴义礼张刘陈杨赵吴孙马罗郑谢许韩冯邓"
    "萧蒋苏吕卢钟谭陆贾韦邹闫贺顾龚万钱严汤颖飞长学发进银亲梦爱凯宁丰莲凤书伦桦铭鸣玲铃娟"
    "鸿虹晖彬锋钢莹鹰绣岚馨欣霖菁蓉雯隆诚芸智钰惠骏倩琴勤",
    "偉華麗軍紅國蘭鳳龍東剛強傑潔輝鵬濤艷靜雲慶寶貴榮興義禮張劉陳楊趙吳孫馬羅鄭謝許韓馮鄧"
    "蕭蔣蘇呂盧鍾譚陸賈韋鄒閆賀顧龔萬錢嚴湯穎飛長學發進銀親夢愛凱寧豐蓮鳳書倫樺銘鳴玲鈴娟"
    "鴻虹暉彬鋒鋼瑩鷹繡嵐馨欣霖菁蓉雯隆誠蕓智鈺惠駿倩琴勤",
    strict=True,
))
# characters whose traditional form is the same glyph are no error: drop them
TRADITIONAL_OF = {s: t for s, t in TRADITIONAL_OF.items() if s != t}


# --- drawing ---------------------------------------------------------------


def _zipf(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def _choice(rng: np.random.Generator, table: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    if n == 0:
        return np.empty(0, dtype=table.dtype)
    return table[rng.choice(len(table), size=n, p=p)]


def draw_surnames(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` surnames drawn with national frequencies (dtype ``U2``)."""
    return _choice(rng, SURNAMES, SURNAME_P, n)


def draw_given_names(rng: np.random.Generator, sex: np.ndarray, born_before_1980: np.ndarray) -> np.ndarray:
    """Given names (1 or 2 characters) for people of ``sex`` ('M'/'F') and era."""
    n = len(sex)
    out = np.empty(n, dtype="U2")
    popular = rng.random(n) < P_POPULAR
    for sx in ("M", "F"):
        for era, era_mask in (("old", born_before_1980), ("new", ~born_before_1980)):
            m = popular & (sex == sx) & era_mask
            table = np.array(POPULAR_GIVEN[(sx, era)].split(), dtype="U2")
            out[m] = _choice(rng, table, _zipf(len(table), 0.6), int(m.sum()))
        m = ~popular & (sex == sx)
        k = int(m.sum())
        chars = np.array(list(dict.fromkeys(GIVEN_CHARS[sx])), dtype="U1")
        p = _zipf(len(chars), 0.5)
        first = _choice(rng, chars, p, k)
        second = _choice(rng, chars, p, k)
        single = rng.random(k) < P_SINGLE_CHAR
        composed = np.where(single, first, np.strings.add(first, second))
        out[m] = composed
    return out


def draw_minority_given(rng: np.random.Generator, sex: np.ndarray) -> np.ndarray:
    """Minority (Uyghur-style) given names for ``sex`` ('M'/'F')."""
    out = np.empty(len(sex), dtype="U6")
    for sx in ("M", "F"):
        m = sex == sx
        table = np.array(MINORITY_GIVEN[sx], dtype="U6")
        out[m] = _choice(rng, table, _zipf(len(table), 0.5), int(m.sum()))
    return out


def draw_names(rng: np.random.Generator, sex: np.ndarray, born_before_1980: np.ndarray,
               surname: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(surname, given) for Han-style names; pass ``surname`` to keep a family's."""
    if surname is None:
        surname = draw_surnames(rng, len(sex))
    return surname, draw_given_names(rng, sex, born_before_1980)
