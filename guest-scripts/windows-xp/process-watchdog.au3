#NoTrayIcon
; kiosk-vm-watchdog: process watchdog. Starts the artwork, waits for its window, keeps it
; maximised and in front, closes windows that are not on the allow-list, and asks the host for
; a revert when the artwork's window is gone:
;   GET <url>/api/v1/revert/request?reason=process_missing     (the window disappeared)
;   GET <url>/api/v1/revert/request?reason=window_timeout      (no window after starting it)
;   GET <url>/api/v1/revert/request?reason=artwork_start_failed (the program would not start)
#include <Misc.au3>
#include "common.au3"

_KVW_Init("process-watchdog")
If _Singleton("kiosk-vm-watchdog-process-watchdog", 1) = 0 Then Exit 0

Global $g_sExe = _KVW_Read("artwork", "exe", "")
Global $g_sArgs = _KVW_Read("artwork", "args", "")
Global $g_sWorkdir = _KVW_Read("artwork", "workdir", "")
Global $g_sTitle = _KVW_Read("artwork", "window_title", "")
Global $g_iMatchMode = _KVW_ReadNumber("artwork", "title_match_mode", 2, 1, 4)
Global $g_iStartTimeout = _KVW_ReadNumber("artwork", "start_timeout_seconds", 20, 1, 600)
Global $g_iCheckMs = _KVW_ReadNumber("artwork", "check_seconds", 1, 0.2, 60) * 1000
Global $g_iGraceMs = _KVW_ReadNumber("artwork", "missing_grace_seconds", 3, 0, 600) * 1000
Global $g_iRevertWaitMs = _KVW_ReadNumber("artwork", "revert_wait_seconds", 60, 5, 3600) * 1000
Global $g_bKeepMaximized = _KVW_ReadFlag("artwork", "keep_maximized", True)
Global $g_bKeepFocused = _KVW_ReadFlag("artwork", "keep_focused", True)
Global $g_bCloseUnlisted = _KVW_ReadFlag("windows", "close_unlisted", True)
Global $g_bDryRun = _KVW_ReadFlag("windows", "dry_run", True)
Global $g_sAllowProcesses = _KVW_Read("windows", "allow_processes", "")
Global $g_sAllowTitles = _KVW_Read("windows", "allow_titles", "Program Manager")
Global $g_sReported = "|" ; windows already logged in dry-run mode, by handle

If $g_sExe = "" Or $g_sTitle = "" Then _KVW_Fatal("[artwork] exe and window_title must be set in " & $g_sKvwConfig)
If Not FileExists($g_sExe) Then _KVW_Fatal("[artwork] exe=" & $g_sExe & " does not exist")
Opt("WinTitleMatchMode", $g_iMatchMode)
; The artwork's process name always stays, whatever the allow-list says.
Global $g_sExeName = StringRegExpReplace($g_sExe, "^.*\\", "")
_KVW_Log("started: " & $g_sExe & ", window '" & $g_sTitle & "', closing unlisted windows: " & _CloseMode())

Global $g_hArtwork = 0
Global $g_hMissingSince = 0
Global $g_sFailure = _StartArtwork()
If $g_sFailure <> "" Then _RevertThenRestart($g_sFailure)
While 1
	If _FindArtworkWindow() Then
		$g_hMissingSince = 0
		_KeepInFront()
		If $g_bCloseUnlisted Then _CloseUnlistedWindows()
	ElseIf $g_hMissingSince = 0 Then
		$g_hMissingSince = TimerInit()
	ElseIf TimerDiff($g_hMissingSince) >= $g_iGraceMs Then
		_KVW_Log("the artwork's window '" & $g_sTitle & "' is gone")
		_RevertThenRestart("process_missing")
		$g_hMissingSince = 0
	EndIf
	Sleep($g_iCheckMs)
WEnd

Func _CloseMode()
	If Not $g_bCloseUnlisted Then Return "off"
	If $g_bDryRun Then Return "dry run (logged, not closed)"
	Return "on"
EndFunc

; Starts the program (unless its window is already there, e.g. after run.exe restarted this
; script) and waits for its window. Returns "" when the window is up, else the revert reason.
Func _StartArtwork()
	If _FindArtworkWindow() Then
		_KVW_Log("artwork window already up")
		Return ""
	EndIf
	Local $iPid = Run('"' & $g_sExe & '" ' & $g_sArgs, $g_sWorkdir)
	If @error Or $iPid = 0 Then
		_KVW_Log("could not start " & $g_sExe)
		Return "artwork_start_failed"
	EndIf
	If WinWait($g_sTitle, "", $g_iStartTimeout) = 0 Then
		_KVW_Log("no window '" & $g_sTitle & "' within " & $g_iStartTimeout & " s of starting " & $g_sExe)
		Return "window_timeout"
	EndIf
	_FindArtworkWindow()
	_KVW_Log("artwork window is up (pid " & $iPid & ")")
	Return ""
EndFunc

; Asks for a revert. Normally the VM is reverted within seconds and this script starts afresh
; from the snapshot. If it is still running after revert_wait_seconds (the host refused, e.g.
; during maintenance), the artwork is started again here; repeated until it is up.
Func _RevertThenRestart($sReason)
	While $sReason <> ""
		_KVW_RequestRevert($sReason)
		Sleep($g_iRevertWaitMs)
		_KVW_Log("still running " & Round($g_iRevertWaitMs / 1000) & " s after asking for a revert (" & $sReason & "): starting the artwork here")
		$sReason = _StartArtwork()
	WEnd
EndFunc

; True when the artwork's window exists; keeps its current handle (it may be recreated).
Func _FindArtworkWindow()
	If IsHWnd($g_hArtwork) And WinExists($g_hArtwork) Then Return True
	Local $hWnd = WinGetHandle($g_sTitle)
	If @error Or Not IsHWnd($hWnd) Then Return False
	$g_hArtwork = $hWnd
	Return True
EndFunc

Func _KeepInFront()
	Local $iState = WinGetState($g_hArtwork)
	If $g_bKeepMaximized And Not BitAND($iState, 32) Then WinSetState($g_hArtwork, "", @SW_MAXIMIZE)
	If $g_bKeepFocused And Not WinActive($g_hArtwork) Then WinActivate($g_hArtwork)
EndFunc

Func _CloseUnlistedWindows()
	Local $aWindows = WinList()
	Local $aProcesses = ProcessList()
	For $i = 1 To $aWindows[0][0]
		Local $sTitle = $aWindows[$i][0]
		Local $hWnd = $aWindows[$i][1]
		If $sTitle = "" Or $hWnd = $g_hArtwork Then ContinueLoop
		If Not BitAND(WinGetState($hWnd), 2) Then ContinueLoop ; hidden: not in the visitor's way
		Local $sProcess = _ProcessName($aProcesses, WinGetProcess($hWnd))
		If $sProcess = $g_sExeName Or $sProcess = StringRegExpReplace(@AutoItExe, "^.*\\", "") Then ContinueLoop
		If _KVW_InList($sProcess, $g_sAllowProcesses) Or _TitleAllowed($sTitle) Then ContinueLoop
		If $g_bDryRun Then
			If Not StringInStr($g_sReported, "|" & $hWnd & "|") Then
				_KVW_Log("dry run: would close '" & $sTitle & "' (" & $sProcess & ")")
				$g_sReported &= $hWnd & "|"
			EndIf
		Else
			_KVW_Log("closing '" & $sTitle & "' (" & $sProcess & "): not on the allow-list")
			WinClose($hWnd)
		EndIf
	Next
EndFunc

Func _ProcessName(ByRef $aProcesses, $iPid)
	For $i = 1 To $aProcesses[0][0]
		If $aProcesses[$i][1] = $iPid Then Return $aProcesses[$i][0]
	Next
	Return "?"
EndFunc

Func _TitleAllowed($sTitle)
	If $g_sAllowTitles = "" Then Return False
	Local $aTitles = StringSplit($g_sAllowTitles, ",")
	For $i = 1 To $aTitles[0]
		Local $sPart = StringStripWS($aTitles[$i], 3)
		If $sPart <> "" And StringInStr($sTitle, $sPart) Then Return True
	Next
	Return False
EndFunc
