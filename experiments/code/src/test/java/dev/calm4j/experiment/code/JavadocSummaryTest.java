package dev.calm4j.experiment.code;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

class JavadocSummaryTest {
    static String summary(String content) {
        JavadocSummary.Result r = JavadocSummary.of(content);
        return r.present() ? r.summary() : "<" + r.reason() + ">";
    }

    @Test
    void firstSentenceOfTheDescriptionWithoutTheBlockTags() {
        assertEquals("Returns the value.", summary("\n * Returns the value. Never null.\n * @return the value\n "));
        assertEquals("Returns the value", summary("\n * Returns the value\n * @return the value\n "));
        assertEquals("Returns the value across two lines.", summary("\n * Returns the value\n *   across two lines.\n"));
        assertEquals("Uses e.g. a cache, i.e. a map, etc. to speed up.", summary(" Uses e.g. a cache, i.e. a map, etc. to speed up. More."));
        assertEquals("Version 3.14 is used.", summary(" Version 3.14 is used. Then more."));
        assertEquals("Ends at the paragraph", summary(" Ends at the paragraph<p>and not here."));
        assertEquals("Ends at the list:", summary(" Ends at the list: <ul><li>one</li></ul>"));
        assertEquals("A leading paragraph tag opens it.", summary("\n * <p>A leading paragraph tag opens it.</p>\n * <p>Second."));
    }

    @Test
    void inlineTagsAreRenderedAndHtmlRemoved() {
        assertEquals("Returns true if s is null.", summary(" Returns {@code true} if {@code s} is {@literal null}."));
        assertEquals("See Map.get and size and the label.", summary(" See {@link java.util.Map#get(Object)} and {@link #size()} and {@link #get(int, int) the label}."));
        assertEquals("Wraps Map<K, {V}> values.", summary(" Wraps {@code Map<K, {V}>} values."));
        assertEquals("Is x <= y — roughly & truly ≠ z.", summary(" Is <em>x</em> &lt;= y &mdash; roughly &amp; <b>truly</b> &#8800; z."));
        assertEquals("Keeps &unknown; and List<String> in code.", summary(" Keeps &unknown; and {@code List<String>} in code."));
        assertEquals("Returns Limits.MAX and Map.Entry.getKey.", summary(" Returns {@value Limits#MAX} and {@link java.util.Map.Entry#getKey()}."));
        assertEquals("A period inside x.y code does not end it.", summary(" A period inside {@code x. y} code does not end it.").replace("x. y", "x.y"));
        assertEquals("Indexes word here.", summary(" Indexes {@index word the description} here."));
    }

    @Test
    void nothingToSummarise() {
        assertEquals("<" + JavadocSummary.INHERIT_DOC + ">", summary(" {@inheritDoc}"));
        assertEquals("<" + JavadocSummary.INHERIT_DOC + ">", summary("\n * {@inheritDoc}\n * <p>This implementation is slow.\n"));
        assertEquals("<" + JavadocSummary.EMPTY + ">", summary("\n * @param x the x\n * @return y\n"));
        assertEquals("<" + JavadocSummary.EMPTY + ">", summary("  "));
        assertFalse(JavadocSummary.of("<p></p>").present());
    }

    @Test
    void unbalancedInlineTagIsReadAsText() {
        assertEquals("Broken {@code tag.", summary(" Broken {@code tag. More"));
    }
}
