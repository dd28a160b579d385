package requests

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ddlagent "github.com/choria-io/go-choria/providers/agent/mcorpc/ddl/agent"
)

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(t *testing.T, v any) []string {
	t.Helper()

	rt := reflect.TypeOf(v)
	require.Equal(t, reflect.Struct, rt.Kind())

	var names []string
	for i := range rt.NumField() {
		tag := rt.Field(i).Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		require.NotEmpty(t, name, "field %s has no json name", rt.Field(i).Name)
		names = append(names, name)
	}
	slices.Sort(names)

	return names
}

func TestDDLMatchesImplementation(t *testing.T) {
	ddl, err := ddlagent.NewFromBytes(DDL())
	require.NoError(t, err)

	require.Equal(t, Name, ddl.Metadata.Name)
	require.Equal(t, "external", ddl.Metadata.Provider)
	require.Equal(t, "0.0.1", ddl.Metadata.Version)
	// the agent has to give up before the server stops waiting for it
	require.Greater(t, ddl.Timeout(), DefaultTimeout+5*time.Second)

	actions := New(openPolicy(Config{})).Actions()
	var implemented []string
	for _, act := range actions {
		implemented = append(implemented, act.Name)
	}
	slices.Sort(implemented)
	require.Equal(t, implemented, ddl.ActionNames(), "actions implemented and declared differ")

	for _, act := range actions {
		t.Run(act.Name, func(t *testing.T) {
			declared, err := ddl.ActionInterface(act.Name)
			require.NoError(t, err)

			require.Equal(t, jsonFields(t, act.Input), declared.InputNames(), "inputs implemented and declared differ")
			require.Equal(t, jsonFields(t, act.Output), declared.OutputNames(), "outputs implemented and declared differ")

			// every input other than url and target is optional, as the
			// agent supplies defaults
			for _, name := range declared.InputNames() {
				in, _ := declared.GetInput(name)
				require.Equal(t, name == "url" || name == "target", in.Required(), "input %s", name)
			}

			// summaries must name outputs, else the CLI prints nothing
			require.NotEmpty(t, declared.Aggregation)
			for _, agg := range declared.Aggregation {
				require.Equal(t, "summary", agg.Function)
				_, ok := declared.GetOutput(agg.OutputName())
				require.True(t, ok, "aggregate on undeclared output %s", agg.OutputName())
			}
		})
	}

	request, err := ddl.ActionInterface("request")
	require.NoError(t, err)
	method, _ := request.GetInput("method")
	require.ElementsMatch(t, supportedMethods, method.Enum)
	require.Equal(t, "statuscode", request.Aggregation[0].OutputName())
}

// The CLI prints "Summary of Status Code" from the DDL aggregate over the
// replies, this runs our replies through go-choria's aggregation.
func TestStatusCodeSummary(t *testing.T) {
	ddl, err := ddlagent.NewFromBytes(DDL())
	require.NoError(t, err)
	request, err := ddl.ActionInterface("request")
	require.NoError(t, err)

	for _, code := range []int{200, 200, 404} {
		j, err := json.Marshal(RequestOutput{StatusCode: code, Headers: map[string]string{}})
		require.NoError(t, err)
		require.NoError(t, request.AggregateResultJSON(j))
	}

	summary, err := request.AggregateSummaryStrings()
	require.NoError(t, err)
	require.Equal(t, map[string]map[string]string{"statuscode": {"200": "2", "404": "1"}}, summary)

	// the CLI titles the block "Summary of <display_as>"
	out, _ := request.GetOutput("statuscode")
	require.Equal(t, "Status Code", out.DisplayAs)
}

// The file on disk and the embedded bytes are the same file, this guards
// against someone replacing the embed with a copy.
func TestDDLEmbedIsTheFile(t *testing.T) {
	dat, err := os.ReadFile("requests.json")
	require.NoError(t, err)
	require.Equal(t, dat, DDL())

	d := DDL()
	d[0] = 'X'
	require.NotEqual(t, d, DDL(), "DDL() must return a copy")
}
